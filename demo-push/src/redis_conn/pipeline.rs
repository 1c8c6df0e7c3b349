//! Non-atomic pipelines on a Redis Cluster. The crate sends a pipeline to one node and
//! refuses one whose keys are in different slots; the register's lookups and the saver's
//! index writes pipeline the keys of many users. So a pipeline is split: the commands of
//! each slot go together as a sub-pipeline (in their order), a command without one key
//! (`MGET` of several, `SCAN`, `PING`) goes alone and the crate routes it, all in flight at
//! once; the answers are put back in the pipeline's order. Commands of different slots were
//! never ordered against each other in a cluster; commands on one key keep their order.

use std::collections::HashMap;

use futures_util::future::{BoxFuture, FutureExt, try_join_all};
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Arg, Cmd, ErrorKind, Pipeline, RedisError, RedisResult, Value};

/// Commands whose keys are all their arguments (several keys: several slots, which the
/// crate splits when the command is sent alone).
const MULTI_KEY: &[&[u8]] = &[b"MGET", b"DEL", b"UNLINK", b"EXISTS", b"TOUCH", b"WATCH"];

/// Commands whose first argument is not a key.
const KEYLESS: &[&[u8]] = &[
    b"PING",
    b"ECHO",
    b"INFO",
    b"TIME",
    b"SCAN",
    b"KEYS",
    b"RANDOMKEY",
    b"DBSIZE",
    b"FLUSHDB",
    b"FLUSHALL",
    b"CLUSTER",
    b"CONFIG",
    b"CLIENT",
    b"COMMAND",
    b"SCRIPT",
    b"FUNCTION",
    b"PUBLISH",
    b"MULTI",
    b"EXEC",
    b"DISCARD",
    b"SELECT",
    b"AUTH",
    b"HELLO",
    b"READONLY",
];

/// The slot of the one key `cmd` names; `None` for a command without a key, or with keys
/// that may be in several slots.
pub(super) fn slot_of(cmd: &Cmd) -> Option<Slot> {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?.to_ascii_uppercase();
    let name = name.as_slice();
    if KEYLESS.contains(&name) {
        return None;
    }
    if matches!(
        name,
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO"
    ) {
        // script, numkeys, keys…: the first key decides (the server checks the others).
        let _script = args.next()?;
        let keys: u64 = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
        return (keys > 0).then(|| args.next().map(Slot::for_key)).flatten();
    }
    let key = args.next()?;
    if MULTI_KEY.contains(&name) && args.next().is_some() {
        return None;
    }
    Some(Slot::for_key(key))
}

/// Which commands of a pipeline go together: indices into the pipeline.
fn groups(pipeline: &Pipeline) -> Vec<(Option<Slot>, Vec<usize>)> {
    let mut groups: Vec<(Option<Slot>, Vec<usize>)> = Vec::new();
    let mut of_slot: HashMap<Slot, usize> = HashMap::new();
    for (i, cmd) in pipeline.cmd_iter().enumerate() {
        match slot_of(cmd) {
            Some(slot) => {
                let g = *of_slot.entry(slot).or_insert_with(|| {
                    groups.push((Some(slot), Vec::new()));
                    groups.len() - 1
                });
                groups[g].1.push(i);
            }
            None => groups.push((None, vec![i])),
        }
    }
    groups
}

/// Sends the non-atomic `pipeline` split by slot and answers every command's value, in
/// the pipeline's order (what `req_packed_commands(pipeline, 0, len)` answers).
pub(super) async fn by_slot(
    conn: &mut ClusterConnection,
    pipeline: &Pipeline,
) -> RedisResult<Vec<Value>> {
    let groups = groups(pipeline);
    if let [(Some(_), _)] = groups.as_slice() {
        // One slot: as it is.
        return conn.req_packed_commands(pipeline, 0, pipeline.len()).await;
    }
    let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let sends: Vec<BoxFuture<'static, RedisResult<Vec<Value>>>> = groups
        .iter()
        .map(|(slot, indices)| {
            let mut conn = conn.clone();
            match slot {
                Some(_) => {
                    let mut sub = redis::pipe();
                    for &i in indices {
                        sub.add_command(cmds[i].clone());
                    }
                    async move { conn.req_packed_commands(&sub, 0, sub.len()).await }.boxed()
                }
                None => {
                    let cmd = cmds[indices[0]].clone();
                    async move { conn.req_packed_command(&cmd).await.map(|v| vec![v]) }.boxed()
                }
            }
        })
        .collect();
    let answers = try_join_all(sends).await?;
    let mut values: Vec<Option<Value>> = (0..cmds.len()).map(|_| None).collect();
    for ((_, indices), answer) in groups.iter().zip(answers) {
        if answer.len() != indices.len() {
            return Err(RedisError::from((
                ErrorKind::Client,
                "a sub-pipeline answered the wrong number of values",
            )));
        }
        for (&i, value) in indices.iter().zip(answer) {
            values[i] = Some(value);
        }
    }
    values
        .into_iter()
        .map(|v| {
            v.ok_or_else(|| {
                RedisError::from((ErrorKind::Client, "a pipelined command got no answer"))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_on_one_hash_tag_share_a_slot_and_multi_key_ones_go_alone() {
        let a = redis::cmd("SADD").arg("p:rs:{room-1}").arg("x").to_owned();
        let b = redis::cmd("RENAME")
            .arg("p:rs:{room-1}")
            .arg("p:rs:{room-1}:reaping:1")
            .to_owned();
        assert_eq!(slot_of(&a), slot_of(&b));
        assert_eq!(slot_of(&a), Some(Slot::for_key("room-1")));
        assert_eq!(slot_of(&redis::cmd("PING")), None);
        assert_eq!(slot_of(redis::cmd("MGET").arg("a").arg("b")), None);
        assert_eq!(
            slot_of(redis::cmd("MGET").arg("a")),
            Some(Slot::for_key("a"))
        );
        assert_eq!(
            slot_of(redis::cmd("EVAL").arg("return 1").arg(1).arg("k").arg("v")),
            Some(Slot::for_key("k"))
        );
        assert_eq!(slot_of(redis::cmd("EVAL").arg("return 1").arg(0)), None);
    }

    #[test]
    fn a_pipeline_is_grouped_by_slot_in_order() {
        let mut pipe = redis::pipe();
        pipe.hset("s:{u1}", "f", "v")
            .pexpire("s:{u1}", 10)
            .sadd("rs:{r}", "m")
            .hdel("s:{u1}", "g")
            .cmd("MGET")
            .arg("a")
            .arg("b");
        let groups = groups(&pipe);
        assert_eq!(
            groups,
            vec![
                (Some(Slot::for_key("u1")), vec![0, 1, 3]),
                (Some(Slot::for_key("r")), vec![2]),
                (None, vec![4]),
            ]
        );
    }
}
