//! The operator's commands: `locks`, `unlock`, `counter`, `inspect`.

use std::borrow::Cow;
use std::io::Write;

use super::duration::show;
use super::exit::{Failure, NOT_FOUND};
use super::store::open_shared;
use super::{LocksArgs, NameArgs, UnlockArgs};
use crate::{LockInfo, RecordInfo, RecordState, Reset};

/// `tollgate locks`: a table of held locks.
pub(crate) fn locks(args: LocksArgs, redis: Option<&str>, json: bool) -> Result<(), Failure> {
    let client = open_shared(redis, "locks")?;
    let limit = args.limit as usize;
    // One more than asked, to tell "exactly N" from "more than N".
    let mut locks = client.locks(&args.pattern, limit.saturating_add(1))?;
    let more = locks.len() > limit;
    locks.truncate(limit);
    locks.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        let rows: Vec<serde_json::Value> = locks.iter().map(lock_json).collect();
        print_json(&serde_json::json!({ "locks": rows, "more": more }));
        return Ok(());
    }
    if locks.is_empty() {
        eprintln!("tollgate: no held lock matches {:?}", args.pattern);
        return Ok(());
    }
    let rows: Vec<[String; 4]> = locks
        .iter()
        .map(|lock| {
            [
                printable(&lock.name).into_owned(),
                lock.fencing_token.to_string(),
                ttl(lock),
                printable(&lock.holder).into_owned(),
            ]
        })
        .collect();
    let header = ["NAME", "TOKEN", "TTL", "HOLDER"].map(String::from);
    let widths: Vec<usize> = (0..3)
        .map(|column| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut stdout = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(&rows) {
        let _ = writeln!(
            stdout,
            "{:<w0$}  {:>w1$}  {:>w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
    }
    if more {
        eprintln!(
            "tollgate: showing {limit} of the held locks (sorted by name); more are held: pass --limit N to see them"
        );
    }
    Ok(())
}

/// `tollgate unlock NAME --force`: exit 0 when a lock was removed, 5 when
/// none was held.
pub(crate) fn unlock(args: UnlockArgs, redis: Option<&str>) -> Result<(), Failure> {
    if !args.force {
        return Err(Failure::usage(format!(
            "refusing to remove lock {:?} without --force: a holder that is still \
             running would lose mutual exclusion",
            args.name
        )));
    }
    let client = open_shared(redis, "unlock")?;
    let holder = client.lock_info(&args.name)?;
    if !client.force_unlock(&args.name)? {
        return Err(Failure::new(
            NOT_FOUND,
            format!("lock {:?} is not held; nothing was removed", args.name),
        ));
    }
    let name = printable(&args.name);
    let _ = match holder {
        Some(lock) => writeln!(
            std::io::stdout(),
            "removed lock {name} (fencing token {}, held by {})",
            lock.fencing_token,
            printable(&lock.holder)
        ),
        None => writeln!(std::io::stdout(), "removed lock {name}"),
    };
    Ok(())
}

/// `tollgate counter NAME`: the value alone, for scripts.
pub(crate) fn counter(args: NameArgs, redis: Option<&str>, json: bool) -> Result<(), Failure> {
    let client = open_shared(redis, "counter")?;
    let value = client.counter(args.name.as_str()).get_if_set()?;
    if json {
        print_json(&serde_json::json!({ "name": args.name, "value": value }));
    }
    match value {
        Some(_) if json => Ok(()),
        Some(value) => {
            let _ = writeln!(std::io::stdout(), "{value}");
            Ok(())
        }
        None => Err(Failure::new(
            NOT_FOUND,
            format!("counter {:?} was never set (it reads as 0)", args.name),
        )),
    }
}

/// `tollgate inspect NAME`: what the name holds, one field a line: its
/// lock, counter and sequences, and, for `NAMESPACE/KEY`, the idempotency
/// record of KEY in NAMESPACE (a plugin's keys are laid out so).
pub(crate) fn inspect(args: NameArgs, redis: Option<&str>, json: bool) -> Result<(), Failure> {
    let client = open_shared(redis, "inspect")?;
    let name = args.name.as_str();
    let lock = client.lock_info(name)?;
    let counter = client.counter(name).get()?;
    let sequence = client.sequence(name).last_reserved()?;
    let daily = client.sequence(name).reset(Reset::Daily).last_reserved()?;
    // The number of permits is not stored; any number lists the holders.
    let permits = client.semaphore(name, 1).holders()?;
    let fenced = client.record(name);
    let entry = fenced.get()?;
    let tombstone = match entry {
        Some(_) => None,
        None => fenced.highest_token()?,
    };
    let record = match name.split_once('/') {
        Some((namespace, key)) if !namespace.is_empty() && !key.is_empty() => {
            client.idempotency(namespace).inspect(key)?
        }
        _ => None,
    };
    if json {
        print_json(&serde_json::json!({
            "name": name,
            "lock": lock.as_ref().map(lock_json),
            "counter": counter,
            "sequence": sequence,
            "daily_sequence": daily,
            "idempotency": record.as_ref().map(record_json),
            "semaphore": permits.iter().map(|p| serde_json::json!({
                "count": p.count,
                "fencing_token": p.fencing_token,
                "ttl_ms": p.remaining_ttl.as_millis() as u64,
                "holder": p.holder,
            })).collect::<Vec<_>>(),
            "record": entry.as_ref().map(|entry| serde_json::json!({
                "value": String::from_utf8_lossy(&entry.value),
                "token": entry.token,
                "ttl_ms": entry.remaining_ttl.map(|ttl| ttl.as_millis() as u64),
            })).or(tombstone.map(|token| serde_json::json!({"deleted": true, "token": token}))),
        }));
        return Ok(());
    }
    let mut fields = vec![("name", printable(&args.name).into_owned())];
    match &lock {
        None => fields.push(("lock", "free".to_owned())),
        Some(lock) => {
            fields.push(("lock", "held".to_owned()));
            fields.push(("fencing token", lock.fencing_token.to_string()));
            fields.push(("ttl", ttl(lock)));
            fields.push(("holder", printable(&lock.holder).into_owned()));
        }
    }
    fields.push(("counter", counter.to_string()));
    if let Some(last) = sequence {
        fields.push(("sequence", format!("{last} reserved")));
    }
    if let Some(last) = daily {
        fields.push(("sequence/day", format!("{last} reserved today")));
    }
    if let Some(record) = &record {
        fields.push(("idempotency", record_line(record)));
    }
    for permit in &permits {
        fields.push((
            "permits",
            format!(
                "{} (token {}, TTL {}, {})",
                permit.count,
                permit.fencing_token,
                show(permit.remaining_ttl),
                printable(&permit.holder)
            ),
        ));
    }
    if let Some(entry) = &entry {
        let ttl = entry
            .remaining_ttl
            .map_or_else(|| "no TTL".to_owned(), |ttl| format!("TTL {}", show(ttl)));
        fields.push((
            "record",
            format!(
                "{} ({} bytes, token {}, {ttl})",
                value_preview(&entry.value),
                entry.value.len(),
                entry.token
            ),
        ));
    } else if let Some(token) = tombstone {
        fields.push(("record", format!("deleted, token {token}")));
    }
    let mut stdout = std::io::stdout().lock();
    for (field, value) in fields {
        let _ = writeln!(stdout, "{field:<13}  {value}");
    }
    Ok(())
}

/// A record's value for a terminal: quoted when it is short UTF-8 text.
fn value_preview(value: &[u8]) -> String {
    const SHOWN: usize = 64;
    match std::str::from_utf8(value) {
        Ok(text) if text.chars().count() <= SHOWN => format!("{text:?}"),
        Ok(text) => {
            let head: String = text.chars().take(SHOWN).collect();
            format!("{head:?}...")
        }
        Err(_) => "(binary)".to_owned(),
    }
}

/// An idempotency record in one line: its state, what it holds, its TTL.
fn record_line(record: &RecordInfo) -> String {
    let state = match &record.state {
        RecordState::Running => "running".to_owned(),
        RecordState::Completed(value) => format!("completed, a {} byte result", value.len()),
        RecordState::Failed(failure) => format!("failed: {}", printable(failure)),
    };
    let ttl = record
        .remaining_ttl
        .map_or_else(|| "no TTL".to_owned(), |ttl| format!("TTL {}", show(ttl)));
    let tied = if record.fingerprinted {
        ", tied to a payload"
    } else {
        ""
    };
    format!("{state} ({ttl}{tied})")
}

/// An idempotency record as JSON; the result as text when it is UTF-8.
fn record_json(record: &RecordInfo) -> serde_json::Value {
    let (state, value) = match &record.state {
        RecordState::Running => ("running", serde_json::Value::Null),
        RecordState::Completed(value) => (
            "completed",
            serde_json::json!(String::from_utf8_lossy(value)),
        ),
        RecordState::Failed(failure) => ("failed", serde_json::json!(failure)),
    };
    serde_json::json!({
        "state": state,
        "value": value,
        "ttl_ms": record.remaining_ttl.map(|ttl| ttl.as_millis() as u64),
        "fingerprinted": record.fingerprinted,
    })
}

/// A held lock as JSON; `ttl_ms` is null when the key has no TTL.
fn lock_json(lock: &LockInfo) -> serde_json::Value {
    serde_json::json!({
        "name": lock.name,
        "fencing_token": lock.fencing_token,
        "ttl_ms": lock.remaining_ttl.map(|ttl| ttl.as_millis() as u64),
        "holder": lock.holder,
    })
}

/// One JSON document on stdout.
pub(crate) fn print_json(value: &serde_json::Value) {
    let _ = writeln!(std::io::stdout(), "{value}");
}

fn ttl(lock: &LockInfo) -> String {
    lock.remaining_ttl.map_or_else(|| "none".to_owned(), show)
}

/// Names and holders are any text: quote those a terminal would garble.
fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(format!("{text:?}"))
    } else {
        Cow::Borrowed(text)
    }
}
