package dev.fraudpipe.decoder;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import org.apache.flink.types.Row;

/**
 * Microseconds per event of {@link DecodePayment} alone, JIT-warm, for bench/stages.py's
 * {@code stage_costs_us} ({@code jvm_decode}): {@code java -cp <jar>:<flink lib>/* dev.fraudpipe.decoder.DecodeBench
 * REGISTRY_URL MIN_SECONDS < values}, one base64 value a line; prints one number. Every value must decode:
 * a dead letter exits 1 naming it, since a bad record costs less and would flatter the figure.
 */
public final class DecodeBench {
    private DecodeBench() {}

    public static void main(String[] args) throws Exception {
        String url = args[0];
        long minNanos = (long) (Double.parseDouble(args[1]) * 1e9);
        List<byte[]> values = new ArrayList<>();
        try (BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            for (String line; (line = in.readLine()) != null; ) {
                if (!line.isBlank()) {
                    values.add(Base64.getDecoder().decode(line.strip()));
                }
            }
        }
        DecodePayment decode = new DecodePayment();
        for (int pass = 0; pass < 3; pass++) { // schemas fetched, then the JIT compiles the hot path
            run(decode, values, url);
        }
        long events = 0;
        long start = System.nanoTime();
        long elapsed;
        do {
            events += run(decode, values, url);
            elapsed = System.nanoTime() - start;
        } while (elapsed < minNanos);
        System.out.println(elapsed / 1000.0 / events);
    }

    private static int run(DecodePayment decode, List<byte[]> values, String url) {
        for (int i = 0; i < values.size(); i++) {
            Row row = decode.eval(values.get(i), url);
            if (row.getField(0) != null) {
                System.err.println("value " + i + " is a dead letter: " + row.getField(0) + " " + row.getField(1));
                System.exit(1);
            }
        }
        return values.size();
    }
}
