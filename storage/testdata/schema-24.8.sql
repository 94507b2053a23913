-- bookkeeping
CREATE TABLE IF NOT EXISTS `gridwatch`.`schema_migrations`
(
    `version` UInt32,
    `name` String,
    `applied` DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY version;

-- migration 0001: telemetry
CREATE TABLE IF NOT EXISTS `gridwatch`.`telemetry`
(
    `ts` DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD),
    `received` DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    `device` String,
    `grid` LowCardinality(String),
    `metric` LowCardinality(String),
    `value` Float64 CODEC(Gorilla, ZSTD)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (device, metric, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- migration 0002: rejected
CREATE TABLE IF NOT EXISTS `gridwatch`.`rejected`
(
    `ts` DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD),
    `device` String,
    `topic` String,
    `reason` LowCardinality(String),
    `detail` String,
    `payload` String CODEC(ZSTD)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (device, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- migration 0003: devices
CREATE TABLE IF NOT EXISTS `gridwatch`.`devices`
(
    `id` String,
    `type` LowCardinality(String),
    `grid` LowCardinality(String),
    `lat` Float64,
    `lon` Float64,
    `name` String,
    `updated` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY id;
