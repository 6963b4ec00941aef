// The consumer lag of a Kafka consumer group on one topic, sampled every few seconds by one long-lived JVM
// (Kafka's Admin client from the broker's jars), for scripts/soak: launching kafka-consumer-groups every 10 s
// would cost a JVM start each time on the soak's two cores.
//
//   java -cp "$KAFKA_HOME/libs/*" scripts/kafka/KafkaLag.java BROKERS GROUP TOPIC EVERY_SECS OUT_FILE
//
// Appends one line per sample to OUT_FILE: "<unix seconds> <lag> <end offsets>", where lag is the sum over
// the topic's partitions of (end offset - the group's committed offset; 0 when it has none, the topic being
// new) and end offsets their sum (messages produced so far). A failed sample writes "nan nan". Runs until
// killed.

import java.io.FileWriter;
import java.io.PrintWriter;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;

public class KafkaLag {
    public static void main(String[] args) throws Exception {
        if (args.length != 5) {
            System.err.println("usage: KafkaLag BROKERS GROUP TOPIC EVERY_SECS OUT_FILE");
            System.exit(2);
        }
        String brokers = args[0], group = args[1], topic = args[2];
        long everyMs = Long.parseLong(args[3]) * 1000;
        Properties props = new Properties();
        props.put("bootstrap.servers", brokers);
        props.put("request.timeout.ms", "5000");
        props.put("default.api.timeout.ms", "8000");
        try (Admin admin = Admin.create(props);
                PrintWriter out = new PrintWriter(new FileWriter(args[4], true))) {
            while (true) {
                long t = System.currentTimeMillis();
                String line;
                try {
                    Map<TopicPartition, OffsetAndMetadata> committed =
                            admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
                    TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
                    Map<TopicPartition, OffsetSpec> ask = new HashMap<>();
                    for (TopicPartitionInfo p : d.partitions()) {
                        ask.put(new TopicPartition(topic, p.partition()), OffsetSpec.latest());
                    }
                    Map<TopicPartition, ListOffsetsResultInfo> ends = admin.listOffsets(ask).all().get();
                    long lag = 0, end = 0;
                    for (Map.Entry<TopicPartition, ListOffsetsResultInfo> e : ends.entrySet()) {
                        long endOffset = e.getValue().offset();
                        OffsetAndMetadata c = committed.get(e.getKey());
                        end += endOffset;
                        lag += endOffset - (c == null ? 0 : c.offset());
                    }
                    line = String.format("%.3f %d %d", t / 1000.0, lag, end);
                } catch (Exception e) {
                    System.err.println("sample failed: " + e);
                    line = String.format("%.3f nan nan", t / 1000.0);
                }
                out.println(line);
                out.flush();
                Thread.sleep(Math.max(0, everyMs - (System.currentTimeMillis() - t)));
            }
        }
    }
}
