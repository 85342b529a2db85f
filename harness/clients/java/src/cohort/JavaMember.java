// The Java consumer (org.apache.kafka:kafka-clients, the pinned Apache Kafka release) as a
// member of the harness's groups: `cohort member --client java` runs this program with the same
// flags a cohort member takes and it prints the same JSON event lines on stdout (started,
// assigned, revoked, lost, processed, committed, error, left), so the journal and the checker
// treat it like any other member. Built by harness/scripts/install-java-member.sh against the
// release's own jars; a test and benchmark tool, not part of the published crates.
//
// Commits are the harness's: every processed record is committed (commitSync, at most every
// `--commit-interval-ms` and in onPartitionsRevoked, as a manual-commit Java application does),
// never by Kafka's auto-commit, so each commit is journaled with what it carried.
package cohort;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

public final class JavaMember {
    private static final PrintStream OUT =
            new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);

    /** Flags, as `cohort member` names them. */
    private static final class Args {
        String bootstrap;
        String group;
        final List<String> topics = new ArrayList<>();
        final List<String> balancers = new ArrayList<>();
        String instanceId;
        Long sessionTimeoutMs;
        Long heartbeatIntervalMs;
        long maxPollIntervalMs = 300_000;
        long processingUs;
        long commitIntervalMs = 500;
        String name = "member";
        String groupProtocol = "classic";
        String remoteAssignor;
        boolean control;
    }

    private static void fail(String why) {
        System.err.println("java member: " + why);
        System.exit(2);
    }

    private static Args parse(String[] argv) {
        Args a = new Args();
        for (int i = 0; i < argv.length; i++) {
            String f = argv[i];
            if (f.equals("--control")) {
                a.control = true;
                continue;
            }
            if (i + 1 >= argv.length) fail(f + " needs a value");
            String v = argv[++i];
            switch (f) {
                case "--bootstrap": a.bootstrap = v; break;
                case "--group": a.group = v; break;
                case "--topic": a.topics.add(v); break;
                case "--balancer": a.balancers.add(v); break;
                case "--instance-id": a.instanceId = v; break;
                case "--session-timeout-ms": a.sessionTimeoutMs = Long.parseLong(v); break;
                case "--heartbeat-interval-ms": a.heartbeatIntervalMs = Long.parseLong(v); break;
                case "--max-poll-interval-ms": a.maxPollIntervalMs = Long.parseLong(v); break;
                case "--processing-us": a.processingUs = Long.parseLong(v); break;
                case "--commit-interval-ms": a.commitIntervalMs = Long.parseLong(v); break;
                case "--name": a.name = v; break;
                case "--group-protocol": a.groupProtocol = v; break;
                case "--group-remote-assignor": a.remoteAssignor = v; break;
                default: fail("unknown flag " + f + " (the Java client cannot honour it)");
            }
        }
        if (a.bootstrap == null || a.group == null || a.topics.isEmpty()) {
            fail("--bootstrap, --group and --topic are required");
        }
        return a;
    }

    /** Java's assignor class for a balancer's protocol name. */
    private static String assignor(String name) {
        switch (name) {
            case "range": return "org.apache.kafka.clients.consumer.RangeAssignor";
            case "roundrobin": return "org.apache.kafka.clients.consumer.RoundRobinAssignor";
            case "sticky": return "org.apache.kafka.clients.consumer.StickyAssignor";
            case "cooperative-sticky": return "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
            default:
                fail("balancer " + name + ": the Java client has range, roundrobin, sticky and cooperative-sticky");
                return null;
        }
    }

    // ---- JSON lines

    private static String str(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
            }
        }
        return b.append('"').toString();
    }

    private static long nowUs() {
        java.time.Instant t = java.time.Instant.now();
        return t.getEpochSecond() * 1_000_000L + t.getNano() / 1_000;
    }

    private static String name;

    private static synchronized void emit(String event, String fields) {
        OUT.println("{\"ts\":" + nowUs() + ",\"source\":" + str(name) + ",\"event\":" + str(event)
                + (fields.isEmpty() ? "" : "," + fields) + "}");
    }

    /** {"topic":[0,1]} */
    private static String partitions(Collection<TopicPartition> tps) {
        Map<String, List<Integer>> m = new TreeMap<>();
        for (TopicPartition tp : tps) m.computeIfAbsent(tp.topic(), k -> new ArrayList<>()).add(tp.partition());
        StringBuilder b = new StringBuilder("{");
        boolean first = true;
        for (Map.Entry<String, List<Integer>> e : m.entrySet()) {
            List<Integer> ps = e.getValue();
            ps.sort(null);
            if (!first) b.append(',');
            first = false;
            b.append(str(e.getKey())).append(":").append(ps.toString().replace(" ", ""));
        }
        return b.append('}').toString();
    }

    /** {"topic":{"0":12}} */
    private static String offsets(Map<TopicPartition, OffsetAndMetadata> offs) {
        Map<String, Map<Integer, Long>> m = new TreeMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) {
            m.computeIfAbsent(e.getKey().topic(), k -> new TreeMap<>()).put(e.getKey().partition(), e.getValue().offset());
        }
        StringBuilder b = new StringBuilder("{");
        boolean first = true;
        for (Map.Entry<String, Map<Integer, Long>> e : m.entrySet()) {
            if (!first) b.append(',');
            first = false;
            b.append(str(e.getKey())).append(":{");
            boolean f2 = true;
            for (Map.Entry<Integer, Long> p : e.getValue().entrySet()) {
                if (!f2) b.append(',');
                f2 = false;
                b.append('"').append(p.getKey()).append("\":").append(p.getValue());
            }
            b.append('}');
        }
        return b.append('}').toString();
    }

    // ---- the member

    private final Args args;
    private final KafkaConsumer<byte[], byte[]> consumer;
    /** Owned partitions, as the rebalance listener tells them. */
    private final java.util.Set<TopicPartition> owned = new java.util.TreeSet<>(
            java.util.Comparator.comparing(TopicPartition::topic).thenComparingInt(TopicPartition::partition));
    /** The next offset to commit per owned partition: past everything processed. */
    private final Map<TopicPartition, OffsetAndMetadata> processed = new HashMap<>();
    private final AtomicLong processingUs;
    private long lastCommit = System.nanoTime();

    private JavaMember(Args a) {
        args = a;
        processingUs = new AtomicLong(a.processingUs);
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, a.bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, a.group);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-" + a.name);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, Long.toString(a.maxPollIntervalMs));
        if (a.instanceId != null) p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, a.instanceId);
        if (a.groupProtocol.equals("consumer")) {
            if (!a.balancers.isEmpty() || a.sessionTimeoutMs != null || a.heartbeatIntervalMs != null) {
                fail("--balancer, --session-timeout-ms and --heartbeat-interval-ms cannot be set with --group-protocol consumer (KIP-848: the broker decides them)");
            }
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
            if (a.remoteAssignor != null) p.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, a.remoteAssignor);
        } else {
            if (a.remoteAssignor != null) fail("--group-remote-assignor needs --group-protocol consumer");
            List<String> classes = new ArrayList<>();
            for (String b : a.balancers.isEmpty() ? List.of("range", "cooperative-sticky") : a.balancers) classes.add(assignor(b));
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, String.join(",", classes));
            if (a.sessionTimeoutMs != null) p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, Long.toString(a.sessionTimeoutMs));
            if (a.heartbeatIntervalMs != null) p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, Long.toString(a.heartbeatIntervalMs));
        }
        consumer = new KafkaConsumer<>(p);
    }

    private int generation() {
        try {
            return consumer.groupMetadata().generationId();
        } catch (RuntimeException e) {
            return -1;
        }
    }

    private String memberId() {
        try {
            return consumer.groupMetadata().memberId();
        } catch (RuntimeException e) {
            return "";
        }
    }

    /**
     * Commits what was processed of `only` (or of every owned partition) and journals it; what
     * fails to commit stays to be committed. A wakeup (the member is stopping) interrupts a
     * commit once: it is sent again, since the partitions' last commit must not be lost.
     */
    private void commit(Collection<TopicPartition> only) {
        Map<TopicPartition, OffsetAndMetadata> offs = new HashMap<>();
        for (TopicPartition tp : only) {
            OffsetAndMetadata o = processed.get(tp);
            if (o != null) offs.put(tp, o);
        }
        if (offs.isEmpty()) return;
        long requested = nowUs();
        int gen = generation();
        for (int attempt = 0; attempt < 2; attempt++) {
            try {
                consumer.commitSync(offs);
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) {
                    processed.remove(e.getKey(), e.getValue());
                }
                emit("committed", "\"generation\":" + gen + ",\"offsets\":" + offsets(offs) + ",\"requested\":" + requested);
                return;
            } catch (WakeupException e) {
                // The wakeup is spent; the next attempt runs to its end.
            } catch (RuntimeException e) {
                emit("error", "\"message\":" + str("commit failed: " + e));
                return;
            }
        }
    }

    private final class Listener implements ConsumerRebalanceListener {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> parts) {
            if (parts.isEmpty()) return;
            // Java's contract: the partitions are still owned here, so the last commit of what
            // was processed goes out before they are given up.
            commit(parts);
            // Whatever did not commit is not this member's to commit any more.
            for (TopicPartition tp : parts) processed.remove(tp);
            emit("revoked", "\"generation\":" + generation() + ",\"partitions\":" + partitions(parts));
            owned.removeAll(parts);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> parts) {
            owned.addAll(parts);
            String protocol = args.groupProtocol.equals("consumer") ? "consumer" : null;
            emit("assigned", "\"generation\":" + generation() + ",\"member_id\":" + str(memberId())
                    + ",\"leader\":null,\"protocol\":" + str(protocol) + ",\"partitions\":" + partitions(owned));
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> parts) {
            for (TopicPartition tp : parts) processed.remove(tp);
            owned.removeAll(parts);
            if (!parts.isEmpty()) emit("lost", "\"partitions\":" + partitions(parts));
        }
    }

    private void run(AtomicBoolean stopping) {
        consumer.subscribe(args.topics, new Listener());
        try {
            while (!stopping.get()) {
                ConsumerRecords<byte[], byte[]> records = consumer.poll(Duration.ofMillis(100));
                for (TopicPartition tp : records.partitions()) {
                    List<ConsumerRecord<byte[], byte[]>> rs = records.records(tp);
                    if (rs.isEmpty()) continue;
                    long delivered = nowUs();
                    long us = processingUs.get() * rs.size();
                    if (us > 0) sleepUs(us);
                    long first = rs.get(0).offset();
                    long last = rs.get(rs.size() - 1).offset();
                    processed.put(tp, new OffsetAndMetadata(last + 1));
                    emit("processed", "\"topic\":" + str(tp.topic()) + ",\"partition\":" + tp.partition()
                            + ",\"first\":" + first + ",\"last\":" + last + ",\"generation\":" + generation()
                            + ",\"delivered\":" + delivered);
                }
                if (System.nanoTime() - lastCommit >= args.commitIntervalMs * 1_000_000L) {
                    commit(new ArrayList<>(owned));
                    lastCommit = System.nanoTime();
                }
            }
        } catch (WakeupException e) {
            // SIGTERM: the shutdown hook woke the poll.
        }
        commit(new ArrayList<>(owned));
        // close() gives the partitions up (onPartitionsRevoked) and leaves the group (a static
        // member does not send LeaveGroup, KIP-345).
        consumer.close(org.apache.kafka.clients.consumer.CloseOptions.timeout(Duration.ofSeconds(30)));
        emit("left", "");
    }

    private static void sleepUs(long us) {
        try {
            Thread.sleep(us / 1000, (int) ((us % 1000) * 1000));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Control commands on stdin: only `processing` applies to a Java member. */
    private void control() {
        Thread t = new Thread(() -> {
            try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
                String line;
                while ((line = in.readLine()) != null) {
                    java.util.regex.Matcher m = java.util.regex.Pattern
                            .compile("\"cmd\"\\s*:\\s*\"processing\".*\"us\"\\s*:\\s*(\\d+)").matcher(line);
                    if (m.find()) {
                        processingUs.set(Long.parseLong(m.group(1)));
                    } else {
                        emit("error", "\"message\":" + str("the Java client has no pluggable network; not applied: " + line.trim()));
                    }
                }
            } catch (java.io.IOException e) {
                // stdin closed: the harness is gone.
            }
        }, "control");
        t.setDaemon(true);
        t.start();
    }

    public static void main(String[] argv) throws Exception {
        Args a = parse(argv);
        name = a.name;
        JavaMember m = new JavaMember(a);
        List<String> strategies = new ArrayList<>();
        if (a.groupProtocol.equals("consumer")) {
            strategies.add("consumer-protocol:" + (a.remoteAssignor == null ? "default" : a.remoteAssignor));
        } else {
            strategies.addAll(a.balancers.isEmpty() ? List.of("range", "cooperative-sticky") : a.balancers);
        }
        StringBuilder bal = new StringBuilder("[");
        for (int i = 0; i < strategies.size(); i++) bal.append(i > 0 ? "," : "").append(str(strategies.get(i)));
        bal.append(']');
        String version = org.apache.kafka.common.utils.internals.AppInfoParser.getVersion();
        emit("started", "\"client\":" + str("java " + version) + ",\"balancers\":" + bal
                + (a.instanceId == null ? "" : ",\"instance_id\":" + str(a.instanceId)));
        if (a.control) m.control();
        AtomicBoolean stopping = new AtomicBoolean(false);
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stopping.set(true);
            m.consumer.wakeup();
            try {
                done.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }));
        try {
            m.run(stopping);
        } finally {
            done.countDown();
        }
    }
}
