package dev.fraudpipe.decoder;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import org.apache.avro.Schema;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writer schemas by id from the Confluent-compatible API (Apicurio's /apis/ccompat/v7), cached for
 * ever once fetched (ids are immutable). The same calls, statuses and retries as
 * fraud_core.registry.RegistryClient.parsed_schema: 404 and other refusals are the record's fault
 * ({@link NotResolvable}), an outage is retried for about 7 s and then thrown as
 * {@link RegistryUnavailable}.
 */
final class SchemaRegistry {
    private static final Logger LOG = LoggerFactory.getLogger(SchemaRegistry.class);
    /** Pauses before each retry of a read while the registry is unavailable (READ_RETRY_BACKOFF_S). */
    static final long[] READ_RETRY_BACKOFF_MS = {200, 500, 1000, 2000, 3000};

    private static final Duration TIMEOUT = Duration.ofSeconds(5);
    private static final ObjectMapper JSON = new ObjectMapper();

    /** The id's schema cannot be had, by the record's fault (unknown id, not Avro, unsafe). */
    static final class NotResolvable extends Exception {
        private static final long serialVersionUID = 1L;

        NotResolvable(String message) {
            super(message);
        }
    }

    private final String baseUrl;
    private final long[] backoffMs;
    private final HttpClient http;
    private final Map<Long, Schema> byId = new HashMap<>();

    SchemaRegistry(String baseUrl, long[] backoffMs) {
        this.baseUrl = baseUrl.replaceAll("/+$", "");
        this.backoffMs = backoffMs;
        this.http = HttpClient.newBuilder().connectTimeout(TIMEOUT).build();
    }

    /** The writer schema of {@code id}, fetched once. */
    Schema schema(long id) throws NotResolvable {
        Schema cached = byId.get(id);
        if (cached != null) {
            return cached;
        }
        String text = read("/schemas/ids/" + id);
        Schema parsed;
        try {
            parsed = new Schema.Parser().setValidateDefaults(false).parse(JSON.readTree(text).get("schema").asText());
        } catch (Exception e) { // JSON, Avro's SchemaParseException and friends
            throw new NotResolvable("schema id " + id + " is not an Avro schema: " + e);
        }
        String unsafe = ZeroSizeArrays.find(parsed);
        if (unsafe != null) {
            throw new NotResolvable(
                    "schema id " + id + " has an array of items that take no bytes (" + unsafe + "): a record "
                            + "claiming 2^62 of them would keep the decoder busy for ever, so it is not accepted");
        }
        byId.put(id, parsed);
        return parsed;
    }

    private static boolean unavailable(int status) {
        return status >= 500 || status == 401 || status == 403 || status == 408 || status == 429;
    }

    /** A GET, retried with {@link #backoffMs} pauses while the registry is unavailable. */
    private String read(String path) throws NotResolvable {
        for (long pause : backoffMs) {
            try {
                return call(path);
            } catch (RegistryUnavailable e) {
                LOG.warn("schema registry unavailable, retrying in {} s: {}", pause / 1000.0, e.getMessage());
                try {
                    Thread.sleep(pause);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    throw e;
                }
            }
        }
        return call(path);
    }

    private String call(String path) throws NotResolvable {
        String url = baseUrl + path;
        HttpResponse<String> resp;
        try {
            HttpRequest request = HttpRequest.newBuilder(URI.create(url))
                    .timeout(TIMEOUT)
                    .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                    .GET()
                    .build();
            resp = http.send(request, HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new RegistryUnavailable("schema registry unreachable at " + url + ": " + e, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new RegistryUnavailable("interrupted calling the schema registry at " + url, e);
        }
        int status = resp.statusCode();
        if (status < 400) {
            return resp.body();
        }
        String body = resp.body();
        String message = "GET " + url + " -> HTTP " + status + ": " + body.substring(0, Math.min(500, body.length()));
        if (status != 404 && unavailable(status)) {
            throw new RegistryUnavailable(message, null);
        }
        throw new NotResolvable(message);
    }
}
