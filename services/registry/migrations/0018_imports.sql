-- Progress of roster imports (the registry's bulk-import use case, which exchangectl import calls),
-- kept beside the persons so that a batch of persons, its outbox rows, its rejects and the progress
-- mark commit together. IF NOT EXISTS: databases imported into before this migration hold the tables
-- already, made by exchangectl's own migration of the same shape.
CREATE TABLE IF NOT EXISTS import_runs (
    import_id     text NOT NULL,            -- SHA-256 of the roster file
    jurisdiction  text NOT NULL,
    file_name     text NOT NULL,
    last_line     bigint NOT NULL DEFAULT 0, -- last line of the last committed batch
    batches       int NOT NULL DEFAULT 0,
    imported      bigint NOT NULL DEFAULT 0,
    rejected      bigint NOT NULL DEFAULT 0,
    unchanged     bigint NOT NULL DEFAULT 0, -- already registered with the same details: skipped
    state         text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    PRIMARY KEY (import_id, jurisdiction)
);

-- One row per rejected roster line: the rule it broke. No cell values: the operator has the file.
CREATE TABLE IF NOT EXISTS import_rejects (
    import_id     text NOT NULL,
    jurisdiction  text NOT NULL,
    line          bigint NOT NULL,
    field         text,
    rule          text NOT NULL,
    message       text NOT NULL,
    PRIMARY KEY (import_id, jurisdiction, line),
    FOREIGN KEY (import_id, jurisdiction) REFERENCES import_runs (import_id, jurisdiction)
);
