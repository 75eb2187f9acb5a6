package dev.ordo.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.ByteArrayOutputStream;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;
import org.apache.avro.util.Utf8;
import org.apache.kafka.common.header.Headers;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;

/**
 * Benchmark contender (e): the transformation of examples/orders/ordo.yaml in Kafka Streams with
 * processing.guarantee=exactly_once_v2. Decodes Confluent-framed Avro by hand (magic byte + 4-byte
 * schema id, writer schema fetched by id from the registry over HTTP, GenericDatumReader with
 * writer + reader schema), applies the two order rules and the customer-tier table, routes to the
 * command topics and encodes the commands with GenericDatumWriter and registered ids.
 *
 * <p>Environment: BENCH_BROKERS, BENCH_GROUP (application.id), BENCH_INPUTS, BENCH_REGISTRY,
 * BENCH_SCHEMA_DIR, BENCH_TIERS, BENCH_STATE_DIR, BENCH_THREADS (default 2).
 */
public final class OrdoStreams {
  static final String DEAD_LETTER = "ordo.dead-letter.v1";
  static final ObjectMapper JSON = new ObjectMapper();
  static final HttpClient HTTP = HttpClient.newHttpClient();

  static String registry;
  static final Map<String, Schema> readers = new HashMap<>();
  static final Map<Integer, GenericDatumReader<GenericRecord>> byId = new ConcurrentHashMap<>();
  static final Map<String, Integer> cmdIds = new HashMap<>();
  static final Map<String, String> tiers = new HashMap<>();

  /** One output record: topic, key, framed Avro value. */
  record Out(String topic, byte[] value, String causation) {}

  public static void main(String[] args) throws Exception {
    registry = System.getenv("BENCH_REGISTRY");
    Path dir = Path.of(System.getenv("BENCH_SCHEMA_DIR"));
    try (var files = Files.list(dir)) {
      for (Path p : (Iterable<Path>) files::iterator) {
        if (!p.toString().endsWith(".avsc")) continue;
        Schema s = new Schema.Parser().parse(Files.readString(p));
        readers.put(s.getFullName(), s);
      }
    }
    List<String> lines = Files.readAllLines(Path.of(System.getenv("BENCH_TIERS")));
    for (String l : lines.subList(1, lines.size())) {
      String[] f = l.split(",");
      tiers.put(f[0], f[1]);
    }
    for (String[] c : new String[][] {
        {"commands.reserve-inventory.v1", "com.acme.ordo.commands.ReserveInventory"},
        {"commands.notify-customer.v1", "com.acme.ordo.commands.NotifyCustomer"},
        {"commands.capture-payment.v1", "com.acme.ordo.commands.CapturePayment"},
        {"commands.cancel-order.v1", "com.acme.ordo.commands.CancelOrder"},
        {"commands.ship-order.v1", "com.acme.ordo.commands.ShipOrder"}}) {
      cmdIds.put(c[0] + "|" + c[1], register(c[0] + "-value", readers.get(c[1]).toString()));
    }

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, System.getenv("BENCH_GROUP"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, System.getenv("BENCH_BROKERS"));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, Integer.parseInt(System.getenv().getOrDefault("BENCH_THREADS", "2")));
    props.put(StreamsConfig.STATE_DIR_CONFIG, System.getenv("BENCH_STATE_DIR"));
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");

    StreamsBuilder b = new StreamsBuilder();
    List<String> inputs = Arrays.asList(System.getenv("BENCH_INPUTS").split(","));
    b.stream(inputs, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
        .processValues(() -> new Transform())
        .flatMap((k, outs) -> {
          List<KeyValue<byte[], Out>> l = new ArrayList<>(outs.size());
          for (Out o : outs) l.add(KeyValue.pair(k, o));
          return l;
        })
        .to((k, o, ctx) -> o.topic(),
            Produced.with(Serdes.ByteArray(), Serdes.serdeFrom((t, o) -> o.value(), (t, d) -> null)));

    KafkaStreams streams = new KafkaStreams(b.build(), props);
    CountDownLatch done = new CountDownLatch(1);
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      streams.close();
      done.countDown();
    }));
    streams.start();
    done.await();
  }

  /** decode → validate → enrich → route → encode, as one processor (it needs the headers). */
  static final class Transform implements FixedKeyProcessor<byte[], byte[], List<Out>> {
    FixedKeyProcessorContext<byte[], List<Out>> ctx;
    final ByteArrayOutputStream bos = new ByteArrayOutputStream(512);
    BinaryEncoder enc;
    BinaryDecoder dec;
    final Map<String, GenericDatumWriter<GenericRecord>> writers = new HashMap<>();

    @Override
    public void init(FixedKeyProcessorContext<byte[], List<Out>> context) {
      ctx = context;
    }

    @Override
    public void process(FixedKeyRecord<byte[], byte[]> rec) {
      ctx.forward(rec.withValue(transform(rec.value())));
    }

    List<Out> transform(byte[] v) {
      try {
        if (v == null || v.length < 5 || v[0] != 0) return List.of(new Out(DEAD_LETTER, v, null));
        int id = ByteBuffer.wrap(v, 1, 4).getInt();
        GenericDatumReader<GenericRecord> reader = byId.computeIfAbsent(id, OrdoStreams::readerFor);
        dec = DecoderFactory.get().binaryDecoder(v, 5, v.length - 5, dec);
        GenericRecord ev = reader.read(null, dec);
        String type = ev.getSchema().getFullName();
        GenericRecord env = (GenericRecord) ev.get("envelope");
        String eventId = env.get("id").toString();
        String corr = env.get("correlation_id").toString();
        List<Out> out = new ArrayList<>(2);
        switch (type) {
          case "com.acme.checkout.OrderPlaced" -> {
            BigDecimal total = decimal(ev.get("total"));
            List<?> items = (List<?>) ev.get("items");
            if (total.signum() <= 0 || items.isEmpty()) return List.of(new Out(DEAD_LETTER, v, null));
            for (Object it : items) {
              if ((Integer) ((GenericRecord) it).get("qty") <= 0) return List.of(new Out(DEAD_LETTER, v, null));
            }
            String tier = tiers.getOrDefault(ev.get("customer_id").toString(), "standard");
            Schema rs = readers.get("com.acme.ordo.commands.ReserveInventory");
            Schema itemSchema = rs.getField("items").schema().getElementType();
            List<GenericRecord> ri = new ArrayList<>(items.size());
            for (Object it : items) {
              GenericRecord x = new GenericData.Record(itemSchema);
              x.put("sku", ((GenericRecord) it).get("sku"));
              x.put("qty", ((GenericRecord) it).get("qty"));
              ri.add(x);
            }
            out.add(cmd("commands.reserve-inventory.v1", "com.acme.ordo.commands.ReserveInventory", ev, eventId, corr, 0,
                Map.of("order_id", ev.get("order_id"), "items", ri, "priority", "gold".equals(tier) ? "express" : "standard")));
            Map<String, Object> n = new HashMap<>();
            n.put("order_id", ev.get("order_id"));
            n.put("template", "order_received");
            n.put("detail", ev.get("note"));
            out.add(cmd("commands.notify-customer.v1", "com.acme.ordo.commands.NotifyCustomer", ev, eventId, corr, 1, n));
          }
          case "com.acme.payments.PaymentAuthorized" -> out.add(cmd("commands.capture-payment.v1", "com.acme.ordo.commands.CapturePayment", ev, eventId, corr, 0,
              Map.of("order_id", ev.get("order_id"), "payment_id", ev.get("payment_id"), "amount", ev.get("amount"), "currency", ev.get("currency"))));
          case "com.acme.payments.PaymentDeclined" -> {
            out.add(cmd("commands.cancel-order.v1", "com.acme.ordo.commands.CancelOrder", ev, eventId, corr, 0,
                Map.of("order_id", ev.get("order_id"), "reason", "payment declined: " + ev.get("reason"))));
            out.add(cmd("commands.notify-customer.v1", "com.acme.ordo.commands.NotifyCustomer", ev, eventId, corr, 1,
                Map.of("order_id", ev.get("order_id"), "template", "payment_declined", "detail", ev.get("reason"))));
          }
          case "com.acme.warehouse.InventoryReserved" -> out.add(cmd("commands.ship-order.v1", "com.acme.ordo.commands.ShipOrder", ev, eventId, corr, 0,
              Map.of("order_id", ev.get("order_id"), "reservation_id", ev.get("reservation_id"), "warehouse", ev.get("warehouse"))));
          case "com.acme.warehouse.InventoryShortage" -> {
            out.add(cmd("commands.cancel-order.v1", "com.acme.ordo.commands.CancelOrder", ev, eventId, corr, 0,
                Map.of("order_id", ev.get("order_id"), "reason", "out of stock: " + ((List<?>) ev.get("missing_skus")).size() + " SKU(s) missing")));
            Map<String, Object> n = new HashMap<>();
            n.put("order_id", ev.get("order_id"));
            n.put("template", "out_of_stock");
            n.put("detail", null);
            out.add(cmd("commands.notify-customer.v1", "com.acme.ordo.commands.NotifyCustomer", ev, eventId, corr, 1, n));
          }
          default -> { }
        }
        return out;
      } catch (Exception e) {
        return List.of(new Out(DEAD_LETTER, v, null));
      }
    }

    Out cmd(String topic, String type, GenericRecord ev, String eventId, String corr, int ei, Map<String, Object> fields) throws Exception {
      Schema s = readers.get(type);
      GenericRecord r = new GenericData.Record(s);
      for (var f : fields.entrySet()) r.put(f.getKey(), f.getValue());
      GenericRecord env = new GenericData.Record(s.getField("envelope").schema());
      env.put("id", commandId(eventId, ei));
      env.put("type", type);
      env.put("source", "kstreams");
      env.put("time", ((GenericRecord) ev.get("envelope")).get("time"));
      env.put("correlation_id", corr);
      env.put("causation_id", eventId);
      r.put("envelope", env);
      bos.reset();
      int id = cmdIds.get(topic + "|" + type);
      bos.write(0);
      bos.write(ByteBuffer.allocate(4).putInt(id).array());
      enc = EncoderFactory.get().binaryEncoder(bos, enc);
      writers.computeIfAbsent(type, t -> new GenericDatumWriter<>(s)).write(r, enc);
      enc.flush();
      return new Out(topic, bos.toByteArray(), eventId);
    }
  }

  static BigDecimal decimal(Object o) {
    ByteBuffer b = ((ByteBuffer) o).duplicate();
    byte[] a = new byte[b.remaining()];
    b.get(a);
    return new BigDecimal(new BigInteger(a), 2);
  }

  static String commandId(String eventId, int ei) throws Exception {
    MessageDigest md = MessageDigest.getInstance("SHA-256");
    md.update(("kstreams\0" + eventId + "\0" + ei).getBytes(StandardCharsets.UTF_8));
    return HexFormat.of().formatHex(md.digest(), 0, 16);
  }

  static GenericDatumReader<GenericRecord> readerFor(int id) {
    try {
      HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create(registry + "/schemas/ids/" + id)).build(),
          HttpResponse.BodyHandlers.ofString());
      if (r.statusCode() != 200) throw new IllegalStateException("schema id " + id + ": " + r.statusCode());
      Schema writer = new Schema.Parser().parse(JSON.readTree(r.body()).get("schema").asText());
      Schema reader = readers.getOrDefault(writer.getFullName(), writer);
      return new GenericDatumReader<>(writer, reader);
    } catch (Exception e) {
      throw new RuntimeException(e);
    }
  }

  static int register(String subject, String schema) throws Exception {
    String body = JSON.writeValueAsString(Map.of("schema", schema));
    HttpResponse<String> r = HTTP.send(HttpRequest.newBuilder(URI.create(registry + "/subjects/" + subject + "/versions"))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofString());
    if (r.statusCode() != 200) throw new IllegalStateException("register " + subject + ": " + r.statusCode() + " " + r.body());
    JsonNode n = JSON.readTree(r.body());
    return n.get("id").asInt();
  }
}
