-- careledger on a ClickHouse cluster: the layout for a province or the country.
--
-- Cluster `careledger` (remote_servers in config.xml) with N shards x 2 replicas, ZooKeeper or
-- ClickHouse Keeper for replication, macros {shard} and {replica} set on every node.
-- Run once with ON CLUSTER; then point the workers at any node:
--   CARELEDGER_CLICKHOUSE_URL=clickhouse://careledger:...@ch-1.example:9000/careledger
-- The ClickHouse store's own `CREATE TABLE IF NOT EXISTS events` is then a no-op and it inserts
-- into the Distributed table `events`, which routes each row to the shard of its person.
--
-- Invariants this layout keeps:
-- * sharding key cityHash64(person_id): all events of one person (a payment, its reversal, the
--   same event re-sent) land on one shard, so ReplacingMergeTree de-duplicates event_id per shard
--   and the "reversed payments are excluded" sub-queries can run shard-local
--   (SET distributed_product_mode = 'local').  job.posted (person_id '') all go to one shard:
--   a few thousand rows a year.
-- * the worker commits its offsets AFTER its events are stored: inserts through the Distributed
--   table must be synchronous, or a crash could leave offsets ahead of rows still queued on the
--   initiator.  Set it in the workers' user profile:
--     <insert_distributed_sync>1</insert_distributed_sync>        (<= 23.x)
--     <distributed_foreground_insert>1</distributed_foreground_insert>  (24.x and later)
-- * consumer_offsets is small and must be read consistently: one replicated table (not
--   sharded), on every node through the `careledger_meta` single-shard cluster.
-- The column list is projections/clickhouse/store.py EVENT_COLUMNS; keep them in step.

CREATE DATABASE IF NOT EXISTS careledger ON CLUSTER careledger;

CREATE TABLE IF NOT EXISTS careledger.events_local ON CLUSTER careledger
(
    `event_id` String,
    `type` String,
    `version` UInt32,
    `occurred_at` DateTime('Asia/Shanghai'),
    `date` Date,
    `person_id` String,
    `town` String,
    `village` String,
    `source` String,
    `program` String,
    `service` String,
    `visit_kind` String,
    `placement_kind` String,
    `need` String,
    `category` String,
    `amount_fen` Int64,
    `positions` Int32,
    `reverses` String,
    `period` String,
    `body` String,
    `kafka_partition` Int32,
    `kafka_offset` Int64,
    `ingest_version` UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/careledger/events_local', '{replica}', ingest_version)
PARTITION BY toYYYYMM(`date`)
ORDER BY (`type`, event_id);

CREATE TABLE IF NOT EXISTS careledger.events ON CLUSTER careledger AS careledger.events_local
ENGINE = Distributed(careledger, careledger, events_local, cityHash64(person_id));

CREATE TABLE IF NOT EXISTS careledger.consumer_offsets_local ON CLUSTER careledger_meta
(
    `projection` String,
    `topic` String,
    `partition` Int32,
    `offset` UInt64
)
ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/meta/careledger/consumer_offsets', '{replica}', `offset`)
ORDER BY (`projection`, `topic`, `partition`);

CREATE TABLE IF NOT EXISTS careledger.consumer_offsets ON CLUSTER careledger AS careledger.consumer_offsets_local
ENGINE = Distributed(careledger_meta, careledger, consumer_offsets_local);
