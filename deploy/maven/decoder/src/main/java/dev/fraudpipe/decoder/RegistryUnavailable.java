package dev.fraudpipe.decoder;

/**
 * The registry could not answer (refused connection, timeout, HTTP 5xx, 408, 429, 401/403) through
 * every retry. Never the record's fault: thrown out of the function, it fails the task and Flink
 * restarts the job from its last checkpoint, as fraud_core.exceptions.RegistryUnavailable does in
 * the Python decoder.
 */
public final class RegistryUnavailable extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public RegistryUnavailable(String message, Throwable cause) {
        super(message, cause);
    }
}
