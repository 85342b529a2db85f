package cohort;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.PrintWriter;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;

import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Assignment;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.GroupAssignment;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.GroupSubscription;
import org.apache.kafka.clients.consumer.ConsumerPartitionAssignor.Subscription;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.consumer.RoundRobinAssignor;
import org.apache.kafka.clients.consumer.StickyAssignor;
import org.apache.kafka.clients.consumer.internals.ConsumerProtocol;
import org.apache.kafka.common.Cluster;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;

/**
 * The leader step of the Java consumer, for comparing plans and timing assignors: reads groups
 * on stdin, runs the named assignor of this kafka-clients release on each exactly as
 * ConsumerCoordinator#onLeaderElected does (JoinGroup metadata deserialized by ConsumerProtocol,
 * the group instance id set beside it, the Cluster built from partition metadata with replica
 * racks), and prints every member's serialized assignment.
 *
 * <p>Input, one token list per line (names, ids and metadata are base64, so any byte is safe):
 * <pre>
 * case ASSIGNOR REPEAT          range | roundrobin | sticky | cooperative-sticky; REPEAT >= 1 timed runs
 * topic NAME64 PARTITIONS [RACKS...] RACKS: one token per partition, base64 racks joined by ',', '-' for none
 * member ID64 INSTANCE64|- METADATA64
 * run
 * </pre>
 * Output per case: {@code plan STEP_NS ASSIGN_NS} (the fastest of the runs: the whole step, decode
 * + assign + encode, and the assignor alone), one {@code assign ID64 ASSIGNMENT64} per member,
 * then {@code done}; or {@code error MESSAGE} and {@code done}.
 */
public final class JavaAssign {
    private JavaAssign() {}

    private static final Base64.Decoder B64D = Base64.getDecoder();
    private static final Base64.Encoder B64E = Base64.getEncoder();

    private static final class Member {
        final String id;
        final String instanceId;
        final byte[] metadata;

        Member(String id, String instanceId, byte[] metadata) {
            this.id = id;
            this.instanceId = instanceId;
            this.metadata = metadata;
        }
    }

    private static final class Case {
        String assignor;
        int repeat = 1;
        final List<PartitionInfo> partitions = new ArrayList<>();
        final Map<String, Node> nodes = new LinkedHashMap<>();
        final List<Member> members = new ArrayList<>();

        /** One node per rack (and one without a rack), as many as the racks named. */
        Node node(String rack) {
            String key = rack == null ? "" : rack;
            return nodes.computeIfAbsent(key, k -> new Node(nodes.size(), "node" + nodes.size(), 9092, rack));
        }
    }

    private static ConsumerPartitionAssignor assignor(String name) {
        switch (name) {
            case "range": return new RangeAssignor();
            case "roundrobin": return new RoundRobinAssignor();
            case "sticky": return new StickyAssignor();
            case "cooperative-sticky": return new CooperativeStickyAssignor();
            default: throw new IllegalArgumentException("no Java assignor named " + name);
        }
    }

    private static String decode(String token) {
        return "-".equals(token) ? null : new String(B64D.decode(token), StandardCharsets.UTF_8);
    }

    public static void main(String[] args) throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        PrintWriter out = new PrintWriter(new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8)));
        // The answers own stdout: the assignors' log lines (log4j's console appender writes to
        // System.out) go to stderr, set before any Kafka class creates its logger.
        System.setOut(System.err);
        Case current = null;
        String line;
        while ((line = in.readLine()) != null) {
            String[] t = line.trim().split(" ");
            switch (t[0]) {
                case "case":
                    current = new Case();
                    current.assignor = t[1];
                    current.repeat = Math.max(1, Integer.parseInt(t[2]));
                    break;
                case "topic": {
                    String topic = decode(t[1]);
                    int count = Integer.parseInt(t[2]);
                    for (int p = 0; p < count; p++) {
                        List<Node> replicas = new ArrayList<>();
                        if (t.length > 3 + p && !"-".equals(t[3 + p])) {
                            for (String rack : t[3 + p].split(",")) {
                                replicas.add(current.node(decode(rack)));
                            }
                        } else {
                            replicas.add(current.node(null));
                        }
                        Node[] r = replicas.toArray(new Node[0]);
                        current.partitions.add(new PartitionInfo(topic, p, r[0], r, r));
                    }
                    break;
                }
                case "member":
                    current.members.add(new Member(decode(t[1]), decode(t[2]), B64D.decode(t[3])));
                    break;
                case "run":
                    run(current, out);
                    out.println("done");
                    out.flush();
                    current = null;
                    break;
                default:
                    if (!t[0].isEmpty()) {
                        throw new IllegalArgumentException("unknown line: " + line);
                    }
            }
        }
        out.flush();
    }

    private static void run(Case c, PrintWriter out) {
        try {
            Cluster cluster = new Cluster("cohort", c.nodes.values(), c.partitions,
                Collections.emptySet(), Collections.emptySet());
            long bestStep = Long.MAX_VALUE;
            long bestAssign = Long.MAX_VALUE;
            Map<String, byte[]> encoded = null;
            for (int i = 0; i < c.repeat; i++) {
                // A fresh assignor each run, as a fresh leader would have.
                ConsumerPartitionAssignor assignor = assignor(c.assignor);
                long start = System.nanoTime();
                Map<String, Subscription> subscriptions = new HashMap<>();
                for (Member m : c.members) {
                    Subscription s = ConsumerProtocol.deserializeSubscription(ByteBuffer.wrap(m.metadata));
                    s.setGroupInstanceId(Optional.ofNullable(m.instanceId));
                    subscriptions.put(m.id, s);
                }
                long assignStart = System.nanoTime();
                GroupAssignment result = assignor.assign(cluster, new GroupSubscription(subscriptions));
                long assignEnd = System.nanoTime();
                Map<String, byte[]> bytes = new LinkedHashMap<>();
                for (Map.Entry<String, Assignment> e : result.groupAssignment().entrySet()) {
                    ByteBuffer b = ConsumerProtocol.serializeAssignment(e.getValue());
                    byte[] a = new byte[b.remaining()];
                    b.get(a);
                    bytes.put(e.getKey(), a);
                }
                long end = System.nanoTime();
                bestStep = Math.min(bestStep, end - start);
                bestAssign = Math.min(bestAssign, assignEnd - assignStart);
                encoded = bytes;
            }
            out.println("plan " + bestStep + " " + bestAssign);
            for (Map.Entry<String, byte[]> e : encoded.entrySet()) {
                out.println("assign " + B64E.encodeToString(e.getKey().getBytes(StandardCharsets.UTF_8))
                    + " " + B64E.encodeToString(e.getValue()));
            }
        } catch (RuntimeException e) {
            out.println("error " + (e.getClass().getSimpleName() + ": " + e.getMessage()).replace('\n', ' '));
        }
    }
}
