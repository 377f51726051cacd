package dev.fraudpipe.decoder;

import java.util.HashSet;
import java.util.Set;
import org.apache.avro.Schema;

/**
 * The path of an array whose items encode in zero bytes ({@code null}, a {@code fixed} of size 0, a
 * record of such fields), as fraud_core.registry.zero_size_array finds it: a forged block count
 * near 2^62 of such items never reaches the end of the buffer, so such a writer schema is refused.
 */
final class ZeroSizeArrays {
    private ZeroSizeArrays() {}

    /** The first such array's path ({@code <root>}, {@code field}, {@code a.b[]}, {@code m{}}), or null. */
    static String find(Schema schema) {
        return find(schema, "", new HashSet<>());
    }

    private static String find(Schema t, String path, Set<String> seen) {
        switch (t.getType()) {
            case UNION:
                for (Schema branch : t.getTypes()) {
                    String hit = find(branch, path, seen);
                    if (hit != null) {
                        return hit;
                    }
                }
                return null;
            case ARRAY:
                if (encodesEmpty(t.getElementType(), new HashSet<>())) {
                    return path.isEmpty() ? "<root>" : path;
                }
                return find(t.getElementType(), path + "[]", seen);
            case MAP:
                return find(t.getValueType(), path + "{}", seen);
            case RECORD:
                if (seen.contains(t.getFullName())) {
                    return null; // a recursive reference, walked already on this path
                }
                Set<String> walked = new HashSet<>(seen);
                walked.add(t.getFullName());
                for (Schema.Field f : t.getFields()) {
                    String fieldPath = path.isEmpty() ? f.name() : path + "." + f.name();
                    String hit = find(f.schema(), fieldPath, walked);
                    if (hit != null) {
                        return hit;
                    }
                }
                return null;
            default:
                return null;
        }
    }

    private static boolean encodesEmpty(Schema t, Set<String> seen) {
        switch (t.getType()) {
            case NULL:
                return true;
            case FIXED:
                return t.getFixedSize() == 0;
            case RECORD:
                if (seen.contains(t.getFullName())) {
                    return false;
                }
                Set<String> inner = new HashSet<>(seen);
                inner.add(t.getFullName());
                for (Schema.Field f : t.getFields()) {
                    if (!encodesEmpty(f.schema(), inner)) {
                        return false;
                    }
                }
                return true;
            default:
                return false; // a union's branch index and an array's block count take a byte at least
        }
    }
}
