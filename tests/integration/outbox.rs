//! The bulk path's COPY stream (`dvault::load::outbox`): what the writer relies on
//! when it hands COPYs over and settles before reading the vault.

use std::time::Duration;

use bytes::Bytes;
use dvault::load::outbox::Outbox;
use tokio_postgres::Client;

use crate::harness::TestDb;

const COPY: &str = "COPY t (n) FROM STDIN";

/// A fresh database with a table `t (n <column>)`.
async fn with_table(column: &str) -> (TestDb, Client) {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(&format!("CREATE TABLE t (n {column})"))
        .await
        .expect("table");
    (db, client)
}

#[tokio::test]
async fn settling_waits_for_every_copy_handed_over_and_then_reads_all_their_rows() {
    let (_db, mut client) = with_table("integer").await;
    let tx = client.transaction().await.expect("transaction");
    let outbox = Outbox::new();
    let writer = async {
        let first = outbox.start(COPY.into()).expect("start");
        first
            .send(Bytes::from_static(b"1\n2\n"))
            .await
            .expect("send");
        let early = tokio::time::timeout(Duration::from_millis(300), outbox.settle()).await;
        assert!(early.is_err(), "settled while a COPY was still open");
        first.send(Bytes::from_static(b"3\n")).await.expect("send");
        first.end().expect("end");
        let second = outbox.start(COPY.into()).expect("start");
        second.send(Bytes::from_static(b"4\n")).await.expect("send");
        second.end().expect("end");
        outbox.settle().await.expect("settled");
        // a statement of the writer's own now runs after both COPYs
        let n: i64 = tx
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .expect("count")
            .get(0);
        outbox.close();
        n
    };
    let (drained, rows) = tokio::join!(outbox.drain(&tx), writer);
    drained.expect("drained");
    assert_eq!(rows, 4);
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn a_copy_the_database_refuses_ends_the_drain_with_its_error_and_every_hand_over_after_it() {
    let (_db, mut client) = with_table("integer CHECK (n > 0)").await;
    let tx = client.transaction().await.expect("transaction");
    let outbox = Outbox::new();
    let writer = async {
        let copy = outbox.start(COPY.into()).expect("start");
        copy.send(Bytes::from_static(b"1\n-1\n"))
            .await
            .expect("send");
        copy.end().expect("end");
        let settled = outbox.settle().await;
        let after = outbox.start(COPY.into()).map(|_| ());
        outbox.close();
        (settled, after)
    };
    let (drained, (settled, after)) = tokio::join!(outbox.drain(&tx), writer);
    let e = drained.expect_err("the COPY was refused");
    assert!(
        e.is_data(),
        "the database's own error, as data refused: {e}"
    );
    assert!(e.to_string().contains("t_n_check"), "{e}");
    assert!(settled.is_err(), "the writer learns the stream ended");
    assert!(after.is_err(), "nothing is handed over after the failure");
}

#[tokio::test]
async fn a_copy_the_writer_gives_up_on_fails_and_the_error_is_the_writers() {
    let (_db, mut client) = with_table("integer").await;
    let tx = client.transaction().await.expect("transaction");
    let outbox = Outbox::new();
    let writer = async {
        let copy = outbox.start(COPY.into()).expect("start");
        copy.send(Bytes::from_static(b"1\n")).await.expect("send");
        // as a writer that cannot encode a row: the stream is dropped unfinished
        drop(copy);
        let settled = outbox.settle().await;
        outbox.close();
        settled
    };
    let (drained, settled) = tokio::join!(outbox.drain(&tx), writer);
    drained.expect("the drain has no error of its own");
    assert!(settled.is_err(), "the COPY did not end well");
    let aborted = tx.query_one("SELECT count(*) FROM t", &[]).await;
    assert!(
        aborted.is_err(),
        "the unfinished COPY failed, and the transaction with it"
    );
}
