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

-- migration 0004: registry
CREATE TABLE IF NOT EXISTS `gridwatch`.`registry`
(
    `kind` LowCardinality(String),
    `key` String,
    `doc` String,
    `updated` DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY (kind, key);

-- migration 0005: device_status
CREATE TABLE IF NOT EXISTS `gridwatch`.`device_status`
(
    `ts` DateTime64(3, 'UTC'),
    `device` String,
    `status` LowCardinality(String),
    `reason` LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (device, ts)
SETTINGS non_replicated_deduplication_window = 1000;

-- migration 0006: alerts
CREATE TABLE IF NOT EXISTS `gridwatch`.`alerts`
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
ENGINE = ReplacingMergeTree(revision)
ORDER BY id;

-- migration 0007: alert_events
CREATE TABLE IF NOT EXISTS `gridwatch`.`alert_events`
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (alert_id, version);

-- migration 0008: camera_health
CREATE TABLE IF NOT EXISTS `gridwatch`.`camera_health`
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (camera, ts)
TTL toDateTime(ts) + INTERVAL 90 DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- migration 0009: batch_ledger
ALTER TABLE `gridwatch`.`telemetry` ADD COLUMN IF NOT EXISTS `batch` String DEFAULT '';

-- migration 0010: silences
CREATE TABLE IF NOT EXISTS `gridwatch`.`silences`
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
ENGINE = ReplacingMergeTree(revision)
ORDER BY id;

-- migration 0011: case_events
CREATE TABLE IF NOT EXISTS `gridwatch`.`case_events`
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
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (case_id, seq);

-- migration 0012: cases
CREATE TABLE IF NOT EXISTS `gridwatch`.`cases`
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
ENGINE = ReplacingMergeTree(revision)
ORDER BY id;

-- migration 0013: camera_pictures
ALTER TABLE `gridwatch`.`camera_health`
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

-- migration 0014: case_summaries
CREATE TABLE IF NOT EXISTS `gridwatch`.`case_summaries`
(
    `case_id` String,
    `version` UInt64,
    `assignment` Nested(
        `unit` LowCardinality(String),
        `grid` LowCardinality(String),
        `dispatcher` String,
        `dispatched` Int64,
        `flags` UInt16,
        `reworks` UInt16,
        `satisfaction_sum` UInt32,
        `satisfaction_n` UInt16,
        `sign_ms` Int64,
        `handle_ms` Int64
    ),
    `action` Nested(
        `ts` Int64,
        `who` LowCardinality(String),
        `grid` LowCardinality(String)
    )
)
ENGINE = ReplacingMergeTree(version)
ORDER BY case_id;

-- migration 0015: case_summaries_backfill
INSERT INTO `gridwatch`.`case_summaries` (case_id, version, `assignment.unit`, `assignment.grid`, `assignment.dispatcher`, `assignment.dispatched`, `assignment.flags`, `assignment.reworks`, `assignment.satisfaction_sum`, `assignment.satisfaction_n`, `assignment.sign_ms`, `assignment.handle_ms`, `action.ts`, `action.who`, `action.grid`)
SELECT case_id, any(version), groupArrayIf(unit, i > 0) AS `assignment.unit`, groupArrayIf(grid, i > 0) AS `assignment.grid`, groupArrayIf(dispatcher, i > 0) AS `assignment.dispatcher`, groupArrayIf(dispatched, i > 0) AS `assignment.dispatched`, groupArrayIf(toUInt16(misrouted) * 1 + toUInt16(wrong_return) * 2 + toUInt16(withdrawn) * 4 + toUInt16(signed) * 8 + toUInt16(signed AND sign_ok) * 16 + toUInt16(handled) * 32 + toUInt16(handled AND handle_ok) * 64 + toUInt16(extended) * 128 + toUInt16(closed) * 256 + toUInt16(closed AND close_ok) * 512 + toUInt16(overdue) * 1024 + toUInt16(ended) * 2048 + toUInt16(sign_late) * 4096 + toUInt16(handle_late) * 8192 + toUInt16(close_late) * 16384, i > 0) AS `assignment.flags`, groupArrayIf(toUInt16(reworks), i > 0) AS `assignment.reworks`, groupArrayIf(toUInt32(sat_sum), i > 0) AS `assignment.satisfaction_sum`, groupArrayIf(toUInt16(sat_n), i > 0) AS `assignment.satisfaction_n`, groupArrayIf(if(signed, sign_t - dispatched, 0), i > 0) AS `assignment.sign_ms`, groupArrayIf(if(handled, handle_t - dispatched, 0), i > 0) AS `assignment.handle_ms`, any(arrayMap(x -> x.6, acts)) AS `action.ts`, any(arrayMap(x -> concat(x.2, '', x.4, '', x.3), acts)) AS `action.who`, any(arrayMap(x -> x.5, acts)) AS `action.grid` FROM (SELECT case_id, version, i, acts, disp[i].3 AS unit, disp[i].4 AS grid, disp[i].5 AS dispatcher, disp[i].2 AS dispatched, arrayExists((kk, aa) -> aa = i AND kk = 3, k, a) AS returned, returned AND NOT withdrawn AND disp[i + 1].3 != unit AS misrouted, returned AND disp[i + 1].3 = unit AS wrong_return, arrayFirstIndex((kk, aa) -> aa = i AND kk = 2, k, a) AS sj, sj > 0 AS signed, t[sj] AS sign_t, NOT signed OR d[sj] = 0 OR sign_t <= d[sj] AS sign_ok, arrayExists((kk, aa) -> aa = i AND kk = 13, k, a) OR arrayExists((kk, aa) -> aa = i AND kk = 14, k, a) AS withdrawn, toUInt32(length(k) + 1 - arrayFirstIndex((kk, aa) -> aa = i AND kk = 4, arrayReverse(k), arrayReverse(a))) AS hj0, hj0 <= length(k) AS handled, if(handled, hj0, 0) AS hj, t[hj] AS handle_t, NOT handled OR d[hj] = 0 OR handle_t <= d[hj] AS handle_ok, arrayCount((kk, aa) -> aa = i AND kk = 5, k, a) AS reworks, arrayExists((kk, aa) -> aa = i AND kk = 6, k, a) AS extended, arrayFirstIndex((kk, aa) -> aa = i AND kk = 7, k, a) AS cj, cj > 0 AS closed, NOT closed OR d[cj] = 0 OR t[cj] <= d[cj] AS close_ok, arrayExists((kk, aa) -> aa = i AND kk = 9, k, a) AS sign_late, arrayExists((kk, aa) -> aa = i AND kk = 10, k, a) AS handle_late, arrayExists((kk, aa) -> aa = i AND kk = 11, k, a) AS close_late, arrayExists((kk, aa) -> aa = i AND kk = 8, k, a) OR sign_late OR handle_late OR close_late OR NOT sign_ok OR NOT handle_ok OR NOT close_ok AS overdue, returned OR withdrawn OR closed OR i < length(disp) AS ended, arraySum(arrayMap((ss, kk, aa) -> if(aa = i AND kk = 12, ss, 0), s, k, a)) AS sat_sum, arrayCount((kk, aa) -> aa = i AND kk = 12, k, a) AS sat_n FROM (SELECT case_id, (toUInt64(max(toUnixTimestamp64Milli(ts))) * 65536 + least(uniqExact(seq), 65535)) * 2 AS version, arraySort(groupArray((seq, toUnixTimestamp64Milli(ts), toUInt8(indexOf(['dispatch', 'sign', 'return', 'handle', 'verify_fail', 'extend_approve', 'close', 'overdue', 'overdue/sign', 'overdue/handle', 'overdue/close', 'evaluate', 'void', 'merge'], multiIf(kind = 'overdue' AND note IN ('sign', 'handle', 'close'), concat('overdue/', note), kind = 'merge' AND to_status != 'voided', '', CAST(kind AS String)))), toUnixTimestamp64Milli(due), satisfaction))) AS raw, arrayMap(x -> x.1, raw) AS rseq, arrayFilter((x, q, nq) -> q != nq, raw, rseq, arrayPushBack(arrayPopFront(rseq), 0)) AS evs, arrayMap(x -> x.2, evs) AS t, arrayMap(x -> x.3, evs) AS k, arrayMap(x -> x.4, evs) AS d, arrayMap(x -> x.5, evs) AS s, arrayCumSum(arrayMap(x -> toUInt32(x = 1), k)) AS a, arrayMap(x -> x.1, arrayFilter(x -> x.3 = 1, evs)) AS dseqs, arraySort(groupArrayIf((seq, toUnixTimestamp64Milli(ts), unit, grid, actor), kind = 'dispatch')) AS draw, arrayFilter((x, j) -> has(dseqs, x.1) AND (j = length(draw) OR draw[j + 1].1 != x.1), draw, arrayEnumerate(draw)) AS disp, arraySort(groupArray((seq, CAST(role AS String), CAST(actor AS String), CAST(kind AS String), CAST(grid AS String), toUnixTimestamp64Milli(ts)))) AS araw, arrayMap(x -> x.1, araw) AS aq, arrayMap(x -> x.2, araw) AS ar, arrayMap(x -> x.3, araw) AS ac, arrayMap(x -> x.4, araw) AS ak, arrayMap(x -> x.5, araw) AS ag, arrayFilter((x, q, nq, r, nr, c, nc, w, nw, g, ng) -> q != nq OR r != nr OR c != nc OR w != nw OR g != ng, araw, aq, arrayPushBack(arrayPopFront(aq), 0), ar, arrayPushBack(arrayPopFront(ar), ''), ac, arrayPushBack(arrayPopFront(ac), ''), ak, arrayPushBack(arrayPopFront(ak), ''), ag, arrayPushBack(arrayPopFront(ag), '')) AS acts FROM `gridwatch`.`case_events` WHERE 1 GROUP BY case_id) LEFT ARRAY JOIN arrayEnumerate(disp) AS i) GROUP BY case_id;

-- migration 0016: alert_case
ALTER TABLE `gridwatch`.`alerts`
    ADD COLUMN IF NOT EXISTS `case_id` String DEFAULT '';

-- migration 0017: case_summaries_settled
INSERT INTO `gridwatch`.`case_summaries` (case_id, version, `assignment.unit`, `assignment.grid`, `assignment.dispatcher`, `assignment.dispatched`, `assignment.flags`, `assignment.reworks`, `assignment.satisfaction_sum`, `assignment.satisfaction_n`, `assignment.sign_ms`, `assignment.handle_ms`, `action.ts`, `action.who`, `action.grid`)
SELECT case_id, any(version), groupArrayIf(unit, i > 0) AS `assignment.unit`, groupArrayIf(grid, i > 0) AS `assignment.grid`, groupArrayIf(dispatcher, i > 0) AS `assignment.dispatcher`, groupArrayIf(dispatched, i > 0) AS `assignment.dispatched`, groupArrayIf(toUInt16(misrouted) * 1 + toUInt16(wrong_return) * 2 + toUInt16(withdrawn) * 4 + toUInt16(signed) * 8 + toUInt16(signed AND sign_ok) * 16 + toUInt16(handled) * 32 + toUInt16(handled AND handle_ok) * 64 + toUInt16(extended) * 128 + toUInt16(closed) * 256 + toUInt16(closed AND close_ok) * 512 + toUInt16(overdue) * 1024 + toUInt16(ended) * 2048 + toUInt16(sign_late) * 4096 + toUInt16(handle_late) * 8192 + toUInt16(close_late) * 16384, i > 0) AS `assignment.flags`, groupArrayIf(toUInt16(reworks), i > 0) AS `assignment.reworks`, groupArrayIf(toUInt32(sat_sum), i > 0) AS `assignment.satisfaction_sum`, groupArrayIf(toUInt16(sat_n), i > 0) AS `assignment.satisfaction_n`, groupArrayIf(if(signed, sign_t - dispatched, 0), i > 0) AS `assignment.sign_ms`, groupArrayIf(if(handled, handle_t - dispatched, 0), i > 0) AS `assignment.handle_ms`, any(arrayMap(x -> x.6, acts)) AS `action.ts`, any(arrayMap(x -> concat(x.2, '', x.4, '', x.3), acts)) AS `action.who`, any(arrayMap(x -> x.5, acts)) AS `action.grid` FROM (SELECT case_id, version, i, acts, disp[i].3 AS unit, disp[i].4 AS grid, disp[i].5 AS dispatcher, disp[i].2 AS dispatched, arrayExists((kk, aa) -> aa = i AND kk = 3, k, a) AS returned, returned AND NOT withdrawn AND disp[i + 1].3 != unit AS misrouted, returned AND disp[i + 1].3 = unit AS wrong_return, arrayFirstIndex((kk, aa) -> aa = i AND kk = 2, k, a) AS sj, sj > 0 AS signed, t[sj] AS sign_t, NOT signed OR d[sj] = 0 OR sign_t <= d[sj] AS sign_ok, arrayExists((kk, aa) -> aa = i AND kk = 13, k, a) OR arrayExists((kk, aa) -> aa = i AND kk = 14, k, a) AS withdrawn, toUInt32(length(k) + 1 - arrayFirstIndex((kk, aa) -> aa = i AND kk = 4, arrayReverse(k), arrayReverse(a))) AS hj0, hj0 <= length(k) AS handled, if(handled, hj0, 0) AS hj, t[hj] AS handle_t, NOT handled OR d[hj] = 0 OR handle_t <= d[hj] AS handle_ok, arrayCount((kk, aa) -> aa = i AND kk = 5, k, a) AS reworks, arrayExists((kk, aa) -> aa = i AND kk = 6, k, a) AS extended, arrayFirstIndex((kk, aa) -> aa = i AND kk = 7, k, a) AS cj, cj > 0 AS closed, NOT closed OR d[cj] = 0 OR t[cj] <= d[cj] AS close_ok, arrayExists((kk, aa) -> aa = i AND kk = 9, k, a) AS sign_late, arrayExists((kk, aa) -> aa = i AND kk = 10, k, a) AS handle_late, arrayExists((kk, aa) -> aa = i AND kk = 11, k, a) AS close_late, arrayExists((kk, aa) -> aa = i AND kk = 8, k, a) OR sign_late OR handle_late OR close_late OR NOT sign_ok OR NOT handle_ok OR NOT close_ok AS overdue, returned OR withdrawn OR closed OR i < length(disp) AS ended, arraySum(arrayMap((ss, kk, aa) -> if(aa = i AND kk = 12, ss, 0), s, k, a)) AS sat_sum, arrayCount((kk, aa) -> aa = i AND kk = 12, k, a) AS sat_n FROM (SELECT case_id, (toUInt64(max(toUnixTimestamp64Milli(ts))) * 65536 + least(uniqExact(seq), 65535)) * 2 AS version, arraySort(groupArray((seq, toUnixTimestamp64Milli(ts), toUInt8(indexOf(['dispatch', 'sign', 'return', 'handle', 'verify_fail', 'extend_approve', 'close', 'overdue', 'overdue/sign', 'overdue/handle', 'overdue/close', 'evaluate', 'void', 'merge'], multiIf(kind = 'overdue' AND note IN ('sign', 'handle', 'close'), concat('overdue/', note), kind = 'merge' AND to_status != 'voided', '', CAST(kind AS String)))), toUnixTimestamp64Milli(due), satisfaction))) AS raw, arrayMap(x -> x.1, raw) AS rseq, arrayFilter((x, q, nq) -> q != nq, raw, rseq, arrayPushBack(arrayPopFront(rseq), 0)) AS evs, arrayMap(x -> x.2, evs) AS t, arrayMap(x -> x.3, evs) AS k, arrayMap(x -> x.4, evs) AS d, arrayMap(x -> x.5, evs) AS s, arrayCumSum(arrayMap(x -> toUInt32(x = 1), k)) AS a, arrayMap(x -> x.1, arrayFilter(x -> x.3 = 1, evs)) AS dseqs, arraySort(groupArrayIf((seq, toUnixTimestamp64Milli(ts), unit, grid, actor), kind = 'dispatch')) AS draw, arrayFilter((x, j) -> has(dseqs, x.1) AND (j = length(draw) OR draw[j + 1].1 != x.1), draw, arrayEnumerate(draw)) AS disp, arraySort(groupArray((seq, CAST(role AS String), CAST(actor AS String), CAST(kind AS String), CAST(grid AS String), toUnixTimestamp64Milli(ts)))) AS araw, arrayMap(x -> x.1, araw) AS aq, arrayMap(x -> x.2, araw) AS ar, arrayMap(x -> x.3, araw) AS ac, arrayMap(x -> x.4, araw) AS ak, arrayMap(x -> x.5, araw) AS ag, arrayFilter((x, q, nq, r, nr, c, nc, w, nw, g, ng) -> q != nq OR r != nr OR c != nc OR w != nw OR g != ng, araw, aq, arrayPushBack(arrayPopFront(aq), 0), ar, arrayPushBack(arrayPopFront(ar), ''), ac, arrayPushBack(arrayPopFront(ac), ''), ak, arrayPushBack(arrayPopFront(ak), ''), ag, arrayPushBack(arrayPopFront(ag), '')) AS acts FROM `gridwatch`.`case_events` WHERE 1 GROUP BY case_id) LEFT ARRAY JOIN arrayEnumerate(disp) AS i) GROUP BY case_id;

-- migration 0018: alert_work_order_columns
ALTER TABLE `gridwatch`.`alerts`
    COMMENT COLUMN `unit` 'unused: an alert work order''s unit, written by releases before alerts raised cases (issue 11); new rows hold the default. The work is the alert''s case (case_id, cases, case_events)',
    COMMENT COLUMN `status` 'unused but read: an alert work order''s status, written by releases before alerts raised cases (issue 11); new rows hold the default, and a node leaves out at start the alerts closed then',
    COMMENT COLUMN `refired` 'unused: written by releases before alerts raised cases (issue 11); new rows hold the default',
    COMMENT COLUMN `acked` 'unused: an alert work order''s time, written by releases before alerts raised cases (issue 11); new rows hold the default',
    COMMENT COLUMN `dispatched` 'unused: an alert work order''s time, written by releases before alerts raised cases (issue 11); new rows hold the default',
    COMMENT COLUMN `resolved` 'unused: an alert work order''s time, written by releases before alerts raised cases (issue 11); new rows hold the default',
    COMMENT COLUMN `closed` 'unused: an alert work order''s time, written by releases before alerts raised cases (issue 11); new rows hold the default',
    COMMENT COLUMN `ack_due` 'unused: an alert work order''s deadline, written by releases before alerts raised cases (issue 11); new rows hold the default',
    COMMENT COLUMN `resolve_due` 'unused: an alert work order''s deadline, written by releases before alerts raised cases (issue 11); new rows hold the default',
    COMMENT COLUMN `next_reminder` 'unused: an alert work order''s reminder, written by releases before alerts raised cases (issue 11); new rows hold the default',
    COMMENT COLUMN `ack_overdue` 'unused: an alert work order''s flag, written by releases before alerts raised cases (issue 11); new rows hold the default',
    COMMENT COLUMN `resolve_overdue` 'unused: an alert work order''s flag, written by releases before alerts raised cases (issue 11); new rows hold the default';
