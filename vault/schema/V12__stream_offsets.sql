-- dvault schema, migration 12: where `dvault stream` stands in each Kafka partition.
--
-- `dvault stream` consumes Kafka topics into the event log exactly once: the offsets
-- it consumed are written here in the same transaction as the events they held (and
-- the rejections of the bad ones), so a crash at any point loses nothing and repeats
-- nothing, and a restart goes on from here. Kafka's own committed offsets play no part.
CREATE TABLE ops.stream_offsets (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    partition      integer NOT NULL,
    -- the offset of the next record to consume: every record before it is in the log
    -- or in event_log.rejected
    next_offset    bigint NOT NULL CHECK (next_offset >= 0),
    -- the partition's high watermark (the offset the next record produced will get)
    -- at the last fetch that moved next_offset: the lag is high_watermark - next_offset
    high_watermark bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
COMMENT ON TABLE ops.stream_offsets IS
    'Per consumer group, topic and partition, the next Kafka offset dvault stream consumes; written in the transaction that appends the records before it.';
COMMENT ON COLUMN ops.stream_offsets.next_offset IS
    'Offset of the next record to consume; every record before it is in the event log or quarantined.';
COMMENT ON COLUMN ops.stream_offsets.high_watermark IS
    'The partition''s high watermark when next_offset last moved; lag = high_watermark - next_offset.';
