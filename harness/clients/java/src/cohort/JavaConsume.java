package cohort;

import java.lang.management.ManagementFactory;
import java.time.Duration;
import java.util.List;
import java.util.Properties;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * Consumes a prefilled topic as one member of a fresh consumer group with the Java consumer of
 * this kafka-clients release (its defaults, offsets from the earliest, auto-commit every second)
 * until it has read RECORDS records, touching every value, and prints one JSON line: the time
 * from the first record to the last and this process's CPU time over the same span.
 *
 * <p>Usage: JavaConsume BOOTSTRAP TOPIC GROUP RECORDS
 */
public final class JavaConsume {
    private JavaConsume() {}

    private static long cpuNanos() {
        java.lang.management.OperatingSystemMXBean os = ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.OperatingSystemMXBean sun) {
            return sun.getProcessCpuTime();
        }
        return 0;
    }

    public static void main(String[] args) {
        if (args.length != 4) {
            System.err.println("usage: JavaConsume BOOTSTRAP TOPIC GROUP RECORDS");
            System.exit(2);
        }
        long want = Long.parseLong(args[3]);
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, args[2]);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, "1000");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        long n = 0;
        long bytes = 0;
        long sink = 0;
        long first = 0;
        long firstCpu = 0;
        long deadline = System.nanoTime() + Duration.ofMinutes(10).toNanos();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(p)) {
            c.subscribe(List.of(args[1]));
            while (n < want) {
                if (System.nanoTime() > deadline) {
                    System.err.println("JavaConsume: timed out after " + n + " records");
                    System.exit(1);
                }
                ConsumerRecords<byte[], byte[]> records = c.poll(Duration.ofMillis(100));
                for (ConsumerRecord<byte[], byte[]> r : records) {
                    if (n == 0) {
                        firstCpu = cpuNanos();
                        first = System.nanoTime();
                    }
                    byte[] v = r.value();
                    if (v != null && v.length > 0) {
                        sink += v[v.length - 1];
                        bytes += v.length;
                    }
                    if (++n == want) {
                        break;
                    }
                }
            }
            long took = System.nanoTime() - first;
            long used = cpuNanos() - firstCpu;
            System.out.printf("{\"client\":\"java\",\"records\":%d,\"bytes\":%d,\"ms\":%.3f,\"cpu_ms\":%.3f,\"sink\":%d}%n",
                n, bytes, took / 1e6, used / 1e6, sink);
            System.out.flush();
            // Leaving the group is the next run's business: exit without closing.
            Runtime.getRuntime().halt(0);
        }
    }
}
