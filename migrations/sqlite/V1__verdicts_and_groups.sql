-- faultline state, schema 1: verdicts and fingerprint groups.
-- Times are Unix nanoseconds; `body` is the verdict's JSON as the API serves it.
CREATE TABLE verdicts (
    trace_id       TEXT    NOT NULL,
    entry_span_id  TEXT    NOT NULL,
    ordinal        INTEGER NOT NULL, -- 0: the trace's outermost failing entry
    analyzed_at    INTEGER NOT NULL,
    entry_start    INTEGER NOT NULL,
    service        TEXT    NOT NULL,
    route          TEXT    NOT NULL,
    classification TEXT    NOT NULL,
    fingerprint_id TEXT,
    budget_ms      REAL    NOT NULL,
    body           TEXT    NOT NULL,
    PRIMARY KEY (trace_id, entry_span_id)
);
CREATE INDEX verdicts_by_time ON verdicts (analyzed_at);
CREATE INDEX verdicts_by_fingerprint ON verdicts (fingerprint_id, analyzed_at);

CREATE TABLE fingerprints (
    fingerprint_id TEXT    PRIMARY KEY,
    fingerprint    TEXT    NOT NULL,
    classification TEXT    NOT NULL, -- of the latest occurrence
    count          INTEGER NOT NULL,
    first_seen     INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL,
    first_release  TEXT              -- release of the first occurrence
);
CREATE INDEX fingerprints_by_last_seen ON fingerprints (last_seen);

-- Per group, per dimension (service, release, route, tenant, region, environment, flag),
-- per value: occurrences.
CREATE TABLE fingerprint_values (
    fingerprint_id TEXT    NOT NULL,
    dimension      TEXT    NOT NULL,
    value          TEXT    NOT NULL,
    count          INTEGER NOT NULL,
    PRIMARY KEY (fingerprint_id, dimension, value)
);
