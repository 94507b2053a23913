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
    `ts` Int64,
    `received` Int64,
    `device` String,
    `grid` String,
    `metric` String,
    `value` Float64,
    `date` Date MATERIALIZED toDate(toDateTime(intDiv(ts, 1000)), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (device, metric, ts);

-- migration 0002: rejected
CREATE TABLE IF NOT EXISTS `gridwatch`.`rejected`
(
    `ts` Int64,
    `device` String,
    `topic` String,
    `reason` String,
    `detail` String,
    `payload` String,
    `date` Date MATERIALIZED toDate(toDateTime(intDiv(ts, 1000)), 'UTC')
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (device, ts);

-- migration 0003: devices
CREATE TABLE IF NOT EXISTS `gridwatch`.`devices`
(
    `id` String,
    `type` String,
    `grid` String,
    `lat` Float64,
    `lon` Float64,
    `name` String,
    `updated` Int64
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY id;
