// A small Kafka admin tool on the Admin client of the broker's jars (which have no kafka-tools jar, so no
// kafka-topics or kafka-consumer-groups), for scripts/soak and scripts/chaos. Compile once and run:
//
//   javac -cp "$KAFKA_HOME/libs/*" -d DIR scripts/kafka/KafkaTool.java
//   java -cp "DIR:$KAFKA_HOME/libs/*" KafkaTool COMMAND BROKERS ARGS...
//
// Commands:
//   lag BROKERS GROUP TOPIC EVERY_SECS OUT_FILE   every EVERY_SECS append "<unix seconds> <lag> <end offsets>"
//       to OUT_FILE until killed: lag = the sum over the topic's partitions of (end offset - the group's
//       committed offset, 0 when it has none, the topic being new); a failed sample writes "nan nan". One JVM
//       for a whole soak instead of a JVM start every 10 s on two busy cores.
//   create BROKERS TOPIC PARTITIONS REPLICATION [NAME=VALUE...]   create a topic with these configs
//   describe BROKERS TOPIC    one line per partition ("partition P leader L replicas A,B,C isr A,B"), then
//       "replication-factor N" and "min.insync.replicas N"
//   under-replicated BROKERS TOPIC   print how many partitions have an ISR smaller than their replicas;
//       exit 0 when none, 1 otherwise
//   coordinator BROKERS GROUP   print the node id of the group's coordinator
//   delete BROKERS TOPIC GROUP   delete the topic and the consumer group (errors ignored)

import java.io.FileWriter;
import java.io.PrintWriter;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;

public class KafkaTool {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: KafkaTool lag|create|describe|under-replicated|coordinator|delete BROKERS ARGS...");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[1]);
        props.put("request.timeout.ms", "5000");
        props.put("default.api.timeout.ms", "10000");
        int rc = 0;
        try (Admin admin = Admin.create(props)) {
            switch (args[0]) {
                case "lag" -> lag(admin, args[2], args[3], Long.parseLong(args[4]) * 1000, args[5]);
                case "create" -> {
                    Map<String, String> configs = new HashMap<>();
                    for (int i = 5; i < args.length; i++) {
                        String[] kv = args[i].split("=", 2);
                        configs.put(kv[0], kv[1]);
                    }
                    NewTopic t = new NewTopic(args[2], Integer.parseInt(args[3]), Short.parseShort(args[4])).configs(configs);
                    admin.createTopics(List.of(t)).all().get();
                }
                case "describe" -> {
                    TopicDescription d = topic(admin, args[2]);
                    for (TopicPartitionInfo p : d.partitions()) {
                        System.out.printf("partition %d leader %s replicas %s isr %s%n", p.partition(),
                                p.leader() == null ? "none" : p.leader().idString(), ids(p.replicas()), ids(p.isr()));
                    }
                    System.out.println("replication-factor " + d.partitions().get(0).replicas().size());
                    ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, args[2]);
                    Config c = admin.describeConfigs(List.of(r)).all().get().get(r);
                    System.out.println("min.insync.replicas " + c.get("min.insync.replicas").value());
                }
                case "under-replicated" -> {
                    long n = topic(admin, args[2]).partitions().stream()
                            .filter(p -> p.isr().size() < p.replicas().size()).count();
                    System.out.println(n);
                    rc = n == 0 ? 0 : 1;
                }
                case "coordinator" -> {
                    ConsumerGroupDescription g = admin.describeConsumerGroups(List.of(args[2])).all().get().get(args[2]);
                    System.out.println(g.coordinator().idString());
                }
                case "delete" -> {
                    try {
                        admin.deleteConsumerGroups(List.of(args[3])).all().get();
                    } catch (Exception e) {
                        System.err.println("deleting group " + args[3] + ": " + e);
                    }
                    try {
                        admin.deleteTopics(List.of(args[2])).all().get();
                    } catch (Exception e) {
                        System.err.println("deleting topic " + args[2] + ": " + e);
                    }
                }
                default -> {
                    System.err.println("unknown command " + args[0]);
                    rc = 2;
                }
            }
        }
        System.exit(rc);
    }

    static TopicDescription topic(Admin admin, String name) throws Exception {
        return admin.describeTopics(List.of(name)).allTopicNames().get().get(name);
    }

    static String ids(List<Node> nodes) {
        return nodes.stream().map(Node::idString).collect(Collectors.joining(","));
    }

    static void lag(Admin admin, String group, String topic, long everyMs, String out) throws Exception {
        try (PrintWriter w = new PrintWriter(new FileWriter(out, true))) {
            while (true) {
                long t = System.currentTimeMillis();
                String line;
                try {
                    Map<TopicPartition, OffsetAndMetadata> committed =
                            admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
                    Map<TopicPartition, OffsetSpec> ask = new HashMap<>();
                    for (TopicPartitionInfo p : topic(admin, topic).partitions()) {
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
                w.println(line);
                w.flush();
                Thread.sleep(Math.max(0, everyMs - (System.currentTimeMillis() - t)));
            }
        }
    }
}
