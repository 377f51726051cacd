package dev.fraudpipe.decoder;

import java.io.IOException;
import java.io.InputStream;
import java.util.HashMap;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * {@code decode_payment(value, registry_url)}: a payments.initiated value in Confluent framing
 * (magic byte 0, 4-byte big-endian schema id, Avro binary) decoded in the JVM and resolved into
 * schemas/payment_initiated.avsc, the same reader schema as the Python decoder (fraud_core.avro).
 *
 * <p>A bad record is data, not an exception: the row's {@code error_type} and {@code error_message}
 * carry the dead-letter reason and detail of fraud_core.avro.decode (EMPTY_VALUE, TRUNCATED,
 * BAD_MAGIC_BYTE, UNKNOWN_SCHEMA_ID, AVRO_DECODE) and every field is null; the Python operator
 * dead-letters it with the original bytes, which it still has. A good record has both null and its
 * fields set, {@code event_time} as plain epoch milliseconds (the Python side checks its range, the
 * business rules and the key). A registry that cannot answer is an outage: retried for about 7 s,
 * then {@link RegistryUnavailable} fails the task, never a dead letter.
 */
public class DecodePayment extends ScalarFunction {
    private static final long serialVersionUID = 1L;

    static final String ROW_TYPE = "ROW<error_type STRING, error_message STRING, event_id STRING, user_id STRING, "
            + "card_id STRING, amount_minor BIGINT, currency STRING, merchant_id STRING, merchant_category STRING, "
            + "country STRING, channel STRING, event_time BIGINT, device_id STRING>";
    /** The reader schema's fields in the order of {@link #ROW_TYPE} after the two error columns. */
    static final String[] FIELDS = {
        "event_id", "user_id", "card_id", "amount_minor", "currency", "merchant_id", "merchant_category",
        "country", "channel", "event_time", "device_id"
    };
    private static final int HEADER = 5;
    private static final int DETAIL_LIMIT = 200;

    private transient Schema reader;
    private transient SchemaRegistry registry;
    private transient String registryUrl;
    private transient Map<Long, GenericDatumReader<GenericRecord>> readers;
    private transient BinaryDecoder decoder;
    private transient GenericRecord reuse;

    public @DataTypeHint(ROW_TYPE) Row eval(byte[] value, String registryUrl) {
        if (value == null || value.length == 0) {
            return bad("EMPTY_VALUE", "record has no value");
        }
        if (value.length < HEADER) {
            return bad("TRUNCATED", "value of " + value.length + " bytes is shorter than the 5-byte Confluent header");
        }
        if (value[0] != 0) {
            return bad("BAD_MAGIC_BYTE", "magic byte is " + value[0] + ", expected 0 (Confluent framing)");
        }
        long schemaId = ((value[1] & 0xffL) << 24) | ((value[2] & 0xffL) << 16) | ((value[3] & 0xffL) << 8) | (value[4] & 0xffL);
        GenericDatumReader<GenericRecord> datumReader;
        try {
            datumReader = datumReader(schemaId, registryUrl);
        } catch (SchemaRegistry.NotResolvable e) {
            return bad("UNKNOWN_SCHEMA_ID", "schema id " + schemaId + " cannot be resolved: " + e.getMessage());
        }
        GenericRecord record;
        try {
            decoder = DecoderFactory.get().binaryDecoder(value, HEADER, value.length - HEADER, decoder);
            record = datumReader.read(reuse, decoder);
            int trailing = remaining(decoder);
            if (trailing > 0) {
                return bad("AVRO_DECODE", trailing + " trailing bytes after the Avro body");
            }
        } catch (IOException | RuntimeException e) { // EOF, negative lengths, limits, bad enum indexes ...
            return bad("AVRO_DECODE", "Avro body does not match schema id " + schemaId + ": " + shortened(described(e)));
        }
        reuse = record;
        Row row = new Row(2 + FIELDS.length);
        for (int i = 0; i < FIELDS.length; i++) {
            Object field = record.get(FIELDS[i]);
            // Avro strings are Utf8, enum symbols EnumSymbol; longs stay Long (no logical-type conversion).
            row.setField(2 + i, field == null || field instanceof Long ? field : field.toString());
        }
        return row;
    }

    private GenericDatumReader<GenericRecord> datumReader(long schemaId, String url) throws SchemaRegistry.NotResolvable {
        if (registry == null || !url.equals(registryUrl)) {
            registry = new SchemaRegistry(url, SchemaRegistry.READ_RETRY_BACKOFF_MS);
            registryUrl = url;
            readers = new HashMap<>();
            reader = readerSchema();
        }
        GenericDatumReader<GenericRecord> cached = readers.get(schemaId);
        if (cached == null) {
            cached = new GenericDatumReader<>(registry.schema(schemaId), reader);
            readers.put(schemaId, cached);
        }
        return cached;
    }

    private static Schema readerSchema() {
        try (InputStream in = DecodePayment.class.getResourceAsStream("payment_initiated.avsc")) {
            if (in == null) {
                throw new IllegalStateException("payment_initiated.avsc is missing from the decoder jar; rebuild it (make fetch)");
            }
            return new Schema.Parser().parse(in);
        } catch (IOException e) {
            throw new IllegalStateException("cannot read payment_initiated.avsc from the decoder jar", e);
        }
    }

    private static int remaining(BinaryDecoder decoder) throws IOException {
        return decoder.isEnd() ? 0 : decoder.inputStream().available();
    }

    /** An exception as Python's repr shows one, {@code EOFException('...')}, without the shaded package. */
    static String described(Exception e) {
        String message = e.getMessage();
        return e.getClass().getSimpleName() + (message == null ? "()" : "('" + message + "')");
    }

    /** The error text cut as fraud_core.avro._shortened cuts fastavro's. */
    static String shortened(String detail) {
        if (detail.length() <= DETAIL_LIMIT) {
            return detail;
        }
        return detail.substring(0, DETAIL_LIMIT) + "... (" + detail.length() + " characters)";
    }

    private static Row bad(String errorType, String message) {
        Row row = new Row(2 + FIELDS.length);
        row.setField(0, errorType);
        row.setField(1, message);
        return row;
    }
}
