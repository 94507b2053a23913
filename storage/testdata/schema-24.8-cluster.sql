-- bookkeeping
CREATE TABLE IF NOT EXISTS `gridwatch`.`schema_migrations_local` ON CLUSTER `gridwatch`
(
    `version` UInt32,
    `name` String,
    `applied` DateTime DEFAULT now()
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gridwatch/schema_migrations', '{replica}')
ORDER BY version;
CREATE TABLE IF NOT EXISTS `gridwatch`.`schema_migrations` ON CLUSTER `gridwatch` AS `gridwatch`.`schema_migrations_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `schema_migrations_local`, version);

-- migration 0001: telemetry
CREATE TABLE IF NOT EXISTS `gridwatch`.`telemetry_local` ON CLUSTER `gridwatch`
(
    `ts` DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD),
    `received` DateTime64(3, 'UTC') CODEC(Delta, ZSTD),
    `device` String,
    `grid` LowCardinality(String),
    `metric` LowCardinality(String),
    `value` Float64 CODEC(Gorilla, ZSTD)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gridwatch/telemetry', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (device, metric, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS replicated_deduplication_window = 1000;
CREATE TABLE IF NOT EXISTS `gridwatch`.`telemetry` ON CLUSTER `gridwatch` AS `gridwatch`.`telemetry_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `telemetry_local`, cityHash64(device));

-- migration 0002: rejected
CREATE TABLE IF NOT EXISTS `gridwatch`.`rejected_local` ON CLUSTER `gridwatch`
(
    `ts` DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD),
    `device` String,
    `topic` String,
    `reason` LowCardinality(String),
    `detail` String,
    `payload` String CODEC(ZSTD)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gridwatch/rejected', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (device, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS replicated_deduplication_window = 1000;
CREATE TABLE IF NOT EXISTS `gridwatch`.`rejected` ON CLUSTER `gridwatch` AS `gridwatch`.`rejected_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `rejected_local`, cityHash64(device));

-- migration 0003: devices
CREATE TABLE IF NOT EXISTS `gridwatch`.`devices_local` ON CLUSTER `gridwatch`
(
    `id` String,
    `type` LowCardinality(String),
    `grid` LowCardinality(String),
    `lat` Float64,
    `lon` Float64,
    `name` String,
    `updated` DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/gridwatch/devices', '{replica}', updated)
ORDER BY id;
CREATE TABLE IF NOT EXISTS `gridwatch`.`devices` ON CLUSTER `gridwatch` AS `gridwatch`.`devices_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `devices_local`, cityHash64(id));

-- migration 0004: registry
CREATE TABLE IF NOT EXISTS `gridwatch`.`registry_local` ON CLUSTER `gridwatch`
(
    `kind` LowCardinality(String),
    `key` String,
    `doc` String,
    `updated` DateTime64(3, 'UTC')
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/gridwatch/registry', '{replica}', updated)
ORDER BY (kind, key);
CREATE TABLE IF NOT EXISTS `gridwatch`.`registry` ON CLUSTER `gridwatch` AS `gridwatch`.`registry_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `registry_local`, cityHash64(kind, key));

-- migration 0005: device_status
CREATE TABLE IF NOT EXISTS `gridwatch`.`device_status_local` ON CLUSTER `gridwatch`
(
    `ts` DateTime64(3, 'UTC'),
    `device` String,
    `status` LowCardinality(String),
    `reason` LowCardinality(String)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gridwatch/device_status', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (device, ts)
SETTINGS replicated_deduplication_window = 1000;
CREATE TABLE IF NOT EXISTS `gridwatch`.`device_status` ON CLUSTER `gridwatch` AS `gridwatch`.`device_status_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `device_status_local`, cityHash64(device));

-- migration 0006: alerts
CREATE TABLE IF NOT EXISTS `gridwatch`.`alerts_local` ON CLUSTER `gridwatch`
(
    `id` String,
    `revision` UInt64,
    `version` UInt64,
    `rule` LowCardinality(String),
    `device` String,
    `grid` LowCardinality(String),
    `members` Array(String),
    `category` LowCardinality(String),
    `unit` LowCardinality(String),
    `severity` LowCardinality(String),
    `base_severity` LowCardinality(String),
    `condition` LowCardinality(String),
    `status` LowCardinality(String),
    `summary` String,
    `value` Float64,
    `count` UInt64,
    `pending_since` DateTime64(3, 'UTC'),
    `fired` DateTime64(3, 'UTC'),
    `refired` DateTime64(3, 'UTC'),
    `last_seen` DateTime64(3, 'UTC'),
    `cleared` DateTime64(3, 'UTC'),
    `acked` DateTime64(3, 'UTC'),
    `dispatched` DateTime64(3, 'UTC'),
    `resolved` DateTime64(3, 'UTC'),
    `closed` DateTime64(3, 'UTC'),
    `ack_due` DateTime64(3, 'UTC'),
    `resolve_due` DateTime64(3, 'UTC'),
    `next_reminder` DateTime64(3, 'UTC'),
    `updated` DateTime64(3, 'UTC'),
    `ack_overdue` UInt8,
    `resolve_overdue` UInt8,
    `escalated` UInt8
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/gridwatch/alerts', '{replica}', revision)
ORDER BY id;
CREATE TABLE IF NOT EXISTS `gridwatch`.`alerts` ON CLUSTER `gridwatch` AS `gridwatch`.`alerts_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `alerts_local`, cityHash64(id));

-- migration 0007: alert_events
CREATE TABLE IF NOT EXISTS `gridwatch`.`alert_events_local` ON CLUSTER `gridwatch`
(
    `ts` DateTime64(3, 'UTC'),
    `alert_id` String,
    `version` UInt64,
    `actor` String,
    `kind` LowCardinality(String),
    `from_state` String,
    `to_state` String,
    `note` String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/gridwatch/alert_events', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (alert_id, version);
CREATE TABLE IF NOT EXISTS `gridwatch`.`alert_events` ON CLUSTER `gridwatch` AS `gridwatch`.`alert_events_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `alert_events_local`, cityHash64(alert_id));

-- migration 0008: camera_health
CREATE TABLE IF NOT EXISTS `gridwatch`.`camera_health_local` ON CLUSTER `gridwatch`
(
    `ts` DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD),
    `camera` String,
    `grid` LowCardinality(String),
    `kind` LowCardinality(String),
    `transport` LowCardinality(String),
    `status` LowCardinality(String),
    `detail` String,
    `rechecked` UInt8,
    `duration_ms` Float64,
    `latency_ms` Float64,
    `first_frame_ms` Float64,
    `first_keyframe_ms` Float64,
    `codec` LowCardinality(String),
    `profile` LowCardinality(String),
    `width` UInt32,
    `height` UInt32,
    `nominal_fps` Float64,
    `fps` Float64,
    `bitrate_kbps` Float64,
    `keyframe_interval_s` Float64,
    `frames` UInt64,
    `packets` UInt64,
    `packets_lost` UInt64,
    `loss_pct` Float64,
    `jitter_ms` Float64,
    `frozen` UInt8,
    `error` String
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/gridwatch/camera_health', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (camera, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS replicated_deduplication_window = 1000;
CREATE TABLE IF NOT EXISTS `gridwatch`.`camera_health` ON CLUSTER `gridwatch` AS `gridwatch`.`camera_health_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `camera_health_local`, cityHash64(camera));

-- migration 0009: batch_ledger
ALTER TABLE `gridwatch`.`telemetry_local` ON CLUSTER `gridwatch` ADD COLUMN IF NOT EXISTS `batch` String DEFAULT '';
DROP TABLE IF EXISTS `gridwatch`.`telemetry__old` ON CLUSTER `gridwatch`;
CREATE TABLE IF NOT EXISTS `gridwatch`.`telemetry__new` ON CLUSTER `gridwatch` AS `gridwatch`.`telemetry_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `telemetry_local`, cityHash64(device));
RENAME TABLE `gridwatch`.`telemetry` TO `gridwatch`.`telemetry__old`, `gridwatch`.`telemetry__new` TO `gridwatch`.`telemetry` ON CLUSTER `gridwatch`;
DROP TABLE IF EXISTS `gridwatch`.`telemetry__old` ON CLUSTER `gridwatch`;

-- migration 0010: silences
CREATE TABLE IF NOT EXISTS `gridwatch`.`silences_local` ON CLUSTER `gridwatch`
(
    `id` String,
    `revision` UInt64,
    `rule` String,
    `device` String,
    `grid` String,
    `maintenance` UInt8,
    `ends` DateTime64(3, 'UTC'),
    `actor` String,
    `reason` String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/gridwatch/silences', '{replica}', revision)
ORDER BY id;
CREATE TABLE IF NOT EXISTS `gridwatch`.`silences` ON CLUSTER `gridwatch` AS `gridwatch`.`silences_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `silences_local`, cityHash64(id));

-- migration 0011: case_events
CREATE TABLE IF NOT EXISTS `gridwatch`.`case_events_local` ON CLUSTER `gridwatch`
(
    `ts` DateTime64(3, 'UTC'),
    `case_id` String,
    `seq` UInt32,
    `actor` String,
    `role` LowCardinality(String),
    `kind` LowCardinality(String),
    `from_status` LowCardinality(String),
    `to_status` LowCardinality(String),
    `unit` LowCardinality(String),
    `grid` LowCardinality(String),
    `category` LowCardinality(String),
    `source` LowCardinality(String),
    `due` DateTime64(3, 'UTC'),
    `note` String,
    `evidence` Array(String),
    `satisfaction` UInt8
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/gridwatch/case_events', '{replica}')
PARTITION BY toYYYYMM(ts)
ORDER BY (case_id, seq);
CREATE TABLE IF NOT EXISTS `gridwatch`.`case_events` ON CLUSTER `gridwatch` AS `gridwatch`.`case_events_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `case_events_local`, cityHash64(case_id));

-- migration 0012: cases
CREATE TABLE IF NOT EXISTS `gridwatch`.`cases_local` ON CLUSTER `gridwatch`
(
    `id` String,
    `revision` UInt64,
    `version` UInt32,
    `status` LowCardinality(String),
    `source` LowCardinality(String),
    `category` LowCardinality(String),
    `grid` LowCardinality(String),
    `unit` LowCardinality(String),
    `received` DateTime64(3, 'UTC'),
    `updated` DateTime64(3, 'UTC'),
    `overdue` UInt8,
    `doc` String
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/gridwatch/cases', '{replica}', revision)
ORDER BY id;
CREATE TABLE IF NOT EXISTS `gridwatch`.`cases` ON CLUSTER `gridwatch` AS `gridwatch`.`cases_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `cases_local`, cityHash64(id));

-- migration 0013: camera_pictures
ALTER TABLE `gridwatch`.`camera_health_local` ON CLUSTER `gridwatch`
    ADD COLUMN IF NOT EXISTS `pictures` UInt32 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `luma` Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `contrast` Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `sharpness` Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `noise_sigma` Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `cast_ratio` Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `frame_diff` Float64 DEFAULT -1,
    ADD COLUMN IF NOT EXISTS `referenced` UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `ref_correlation` Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `occluded_pct` Float64 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `signal_loss` UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `blur` UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `too_dark` UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `too_bright` UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `color_cast` UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `noise` UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `occlusion` UInt8 DEFAULT 0,
    ADD COLUMN IF NOT EXISTS `scene_change` UInt8 DEFAULT 0;
DROP TABLE IF EXISTS `gridwatch`.`camera_health__old` ON CLUSTER `gridwatch`;
CREATE TABLE IF NOT EXISTS `gridwatch`.`camera_health__new` ON CLUSTER `gridwatch` AS `gridwatch`.`camera_health_local`
ENGINE = Distributed(`gridwatch`, `gridwatch`, `camera_health_local`, cityHash64(camera));
RENAME TABLE `gridwatch`.`camera_health` TO `gridwatch`.`camera_health__old`, `gridwatch`.`camera_health__new` TO `gridwatch`.`camera_health` ON CLUSTER `gridwatch`;
DROP TABLE IF EXISTS `gridwatch`.`camera_health__old` ON CLUSTER `gridwatch`;
