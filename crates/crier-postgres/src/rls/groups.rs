//! Many groups' row level security questions in one round trip per connection.
//!
//! A batch of changes with subscribers of many distinct claims has as many groups (same
//! table, role and claims) to check, and a round trip each costs a few hundred
//! microseconds of waiting and two wake-ups on a busy machine. So the groups are spread
//! over the pool's connections, and each connection gets its share in one pipelined
//! transaction:
//!
//! ```sql
//! begin;
//! select set_config(...claims...), set_config(...role...);  select k.n from ...;  -- group 1
//! select set_config(...claims...), set_config(...role...);  select k.n from ...;  -- group 2
//! ...
//! rollback;
//! ```
//!
//! The role and claims cannot vary within one statement (a policy reads them from the
//! settings), so one statement per group is the least there can be. The two statements
//! are prepared once per pooled connection and kept (`Lease::prepared`): parsing and
//! analysing them for every group was most of what the database spent. Each group's
//! settings replace the last one's, so nothing is undone between groups; what a check
//! wrote goes with the final rollback. The price: anything else a policy leaves behind
//! in the transaction (another setting it sets, a temporary table) is there for the
//! groups after it in the same batch. Policies are expected to have no such effects;
//! the role and the claims, which every policy reads, are always the group's own.
//!
//! A check that raises aborts the transaction, and every statement after it fails. The
//! groups after it are then asked again in a second transaction, each within a
//! savepoint (`savepoint; set; select; rollback to savepoint`), so that one more raising
//! group spoils no other; and each group whose check raised is asked row by row, as
//! [`super::visible_rows`] does, on the same connection. (Savepoints for every group
//! from the start cost the database half its time: two statements more per group.)

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use super::{Check, SET_ROLE_AND_CLAIMS, row_level};
use crate::catalog::{Catalog, CatalogError, Lease, PrimaryKeyColumn};

/// One group's question: the arguments of [`super::visible_rows`].
#[derive(Debug, Clone, Copy)]
pub struct GroupQuestion<'a> {
    /// The table's schema.
    pub schema: &'a str,
    /// The table.
    pub table: &'a str,
    /// Its primary key (from [`Catalog::table_info`]).
    pub key: &'a [PrimaryKeyColumn],
    /// The subscribers' role.
    pub role: &'a str,
    /// Their claims, as JSON text.
    pub claims: &'a str,
    /// The rows' primary keys, as text.
    pub rows: &'a [Vec<Option<String>>],
}

/// The answer to each question, in order, each as [`super::visible_rows`] would give it
/// (so a refused group is an error of its own). The groups are spread over the pool's
/// connections, one pipelined round trip each (module docs), plus one per group whose
/// check raised. The call fails as a whole only when a connection does.
pub async fn visible_rows_by_group(
    catalog: &Catalog,
    questions: &[GroupQuestion<'_>],
) -> Result<Vec<Result<Vec<bool>, CatalogError>>, CatalogError> {
    let mut answers: Vec<Option<Result<Vec<bool>, CatalogError>>> = Vec::new();
    let mut asked: Vec<(usize, Check<'_>)> = Vec::new();
    for (index, question) in questions.iter().enumerate() {
        match Check::new(
            question.schema,
            question.table,
            question.key,
            question.role,
            question.claims,
            question.rows,
        ) {
            Ok(check) if check.candidates.is_empty() => {
                answers.push(Some(Ok(vec![false; question.rows.len()])));
            }
            Ok(check) => {
                answers.push(None);
                asked.push((index, check));
            }
            Err(err) => answers.push(Some(Err(err))),
        }
    }
    let connections = catalog.connections().max(1);
    let share = asked.len().div_ceil(connections).max(1);
    let shares: Vec<BoxFuture<'_, ShareAnswers>> = asked
        .chunks(share)
        .map(|checks| Box::pin(ask_on_one_connection(catalog, checks)) as BoxFuture<'_, _>)
        .collect();
    for (checks, found) in asked.chunks(share).zip(in_order(shares).await) {
        for ((index, _), visible) in checks.iter().zip(found?) {
            let rows = questions[*index].rows.len();
            answers[*index] = Some(visible.map(|indexes| {
                let mut visible = vec![false; rows];
                for row in indexes {
                    visible[row] = true;
                }
                visible
            }));
        }
    }
    Ok(answers
        .into_iter()
        .map(|answer| answer.expect("every question is answered"))
        .collect())
}

/// What one connection says of its share of the groups: each group's visible rows (by
/// index) or its own error; an error of the whole share when the connection failed.
type ShareAnswers = Result<Vec<Result<Vec<usize>, CatalogError>>, CatalogError>;

/// `checks` in one pipelined transaction on one connection of the pool.
async fn ask_on_one_connection(catalog: &Catalog, checks: &[(usize, Check<'_>)]) -> ShareAnswers {
    let mut lease = catalog.lease().await?;
    let result = ask(&mut lease, checks).await;
    lease.finish(result)
}

async fn ask(lease: &mut Lease<'_>, checks: &[(usize, Check<'_>)]) -> ShareAnswers {
    // The statements, prepared on this connection the first time only: parsing them again
    // for every group was most of the database's work.
    let set = lease
        .prepared(SET_ROLE_AND_CLAIMS, &[Type::TEXT, Type::TEXT])
        .await?;
    // A select that cannot be prepared (its table dropped since, say) is asked alone,
    // unprepared, as `visible_rows` asks, which says what such a group may see.
    let mut selects = Vec::with_capacity(checks.len());
    let mut alone = Vec::new();
    for (place, (_, check)) in checks.iter().enumerate() {
        let types = vec![Type::TEXT_ARRAY; check.keys.len()];
        match lease.prepared(&check.batch_select_sql(), &types).await {
            Ok(select) => selects.push((place, select)),
            Err(err) if err.as_db_error().is_some() => alone.push(place),
            Err(err) => return Err(err.into()),
        }
    }
    let client = lease.client();
    let settings: Vec<[&(dyn ToSql + Sync); 2]> = checks
        .iter()
        .map(|(_, check)| [&check.role as _, &check.claims as _])
        .collect();
    let key_params: Vec<Vec<&(dyn ToSql + Sync)>> = checks
        .iter()
        .map(|(_, check)| check.keys.iter().map(|values| values as _).collect())
        .collect();
    let groups: Vec<Group<'_>> = selects
        .iter()
        .map(|(place, select)| Group {
            place: *place,
            select,
            settings: &settings[*place],
            keys: &key_params[*place],
        })
        .collect();
    // Plainly first: the groups' settings replace each other, so nothing needs undoing
    // between them. A check that raises aborts the transaction, and the groups after it
    // are asked again, each within a savepoint.
    let (mut outcomes, asked) = pipeline(client, &set, &groups, false).await?;
    if asked < groups.len() {
        outcomes.extend(pipeline(client, &set, &groups[asked..], true).await?.0);
    }
    let mut answers: Vec<Result<Vec<usize>, CatalogError>> =
        checks.iter().map(|_| Ok(Vec::new())).collect();
    let mut again = Vec::new();
    let mut stale = Vec::new();
    for (place, outcome) in outcomes {
        let check = &checks[place].1;
        answers[place] = match outcome {
            Ok(rows) => check.visible_from_batch(&rows),
            Err(err)
                if err
                    .as_db_error()
                    .is_some_and(|db| row_level(db.code().code())) =>
            {
                let code = err.as_db_error().map(|db| db.code().code());
                if code.is_some_and(stale_statement) {
                    stale.push(place);
                }
                again.push(place);
                Ok(Vec::new())
            }
            Err(err) => Err(err.into()),
        };
    }
    for &place in &again {
        answers[place] = checks[place].1.row_by_row(client).await;
    }
    for &place in &alone {
        answers[place] = checks[place].1.run(client).await;
    }
    // A statement its table has outlived (dropped and made again) is prepared afresh
    // next time.
    for place in stale {
        lease.forget(&checks[place].1.batch_select_sql());
    }
    Ok(answers)
}

/// One group's prepared question on a connection.
struct Group<'a> {
    /// Its place among the connection's checks.
    place: usize,
    select: &'a Statement,
    settings: &'a [&'a (dyn ToSql + Sync); 2],
    keys: &'a [&'a (dyn ToSql + Sync)],
}

/// What each group asked got (its rows, or the error of its settings or select), and how
/// many of `groups` were asked.
type Outcomes = (Vec<(usize, Result<Vec<Row>, tokio_postgres::Error>)>, usize);

/// Asks `groups` in one transaction, every statement sent before any answer is awaited
/// (`in_order` polls each once, in this order, and a request goes out at its first
/// poll): one round trip. With `savepoints`, each group is asked within one and rolled
/// back to it, so a group that raises leaves the others be; without, the first group
/// that raises ends the asking (the transaction is aborted) and is the last answered.
async fn pipeline(
    client: &Client,
    set: &Statement,
    groups: &[Group<'_>],
    savepoints: bool,
) -> Result<Outcomes, CatalogError> {
    let execute = |sql: &'static str| -> BoxFuture<'_, Result<Vec<Row>, tokio_postgres::Error>> {
        Box::pin(async move { client.batch_execute(sql).await.map(|()| Vec::new()) })
    };
    let mut statements = vec![execute("begin")];
    for group in groups {
        if savepoints {
            statements.push(execute("savepoint crier_group"));
        }
        statements.push(Box::pin(client.query(set, group.settings)));
        statements.push(Box::pin(client.query(group.select, group.keys)));
        if savepoints {
            statements.push(execute("rollback to savepoint crier_group"));
        }
    }
    statements.push(execute("rollback"));
    let mut results = in_order(statements).await.into_iter();
    results.next().expect("begin")?;
    let mut outcomes = Vec::with_capacity(groups.len());
    for group in groups {
        let mut next = || results.next().expect("every group's statements");
        let saved = if savepoints { next() } else { Ok(Vec::new()) };
        let (settled, checked) = (next(), next());
        let restored = if savepoints { next() } else { Ok(Vec::new()) };
        // Without the savepoint the groups after this one cannot be trusted: fail the
        // call (the connection is put back only if the server said what went wrong).
        saved?;
        restored?;
        let outcome = settled.and(checked);
        let raised = outcome.is_err();
        outcomes.push((group.place, outcome));
        if raised && !savepoints {
            break;
        }
    }
    let asked = outcomes.len();
    // The rest of the answers (refusals of an aborted transaction) say nothing new.
    results.last().expect("rollback")?;
    Ok((outcomes, asked))
}

/// Errors that say a prepared statement no longer fits its table: an undefined table,
/// a relation no longer there by its old id (internal error), a changed result type.
fn stale_statement(sqlstate: &str) -> bool {
    matches!(sqlstate, "42P01" | "XX000" | "0A000")
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs `futures` together and returns their outputs in order. Each is first polled in
/// the order given, which is what pipelines their requests on one connection in that
/// order; `futures-util`'s `join_all` does not promise an order for long lists.
async fn in_order<T>(mut futures: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future is done"))
        .collect()
}
