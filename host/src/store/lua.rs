//! Lua scripts, called by their SHA1 digest (`EVALSHA`) and loaded on a
//! server that does not know them yet (`NOSCRIPT`: a new or restarted
//! server, a failover, `SCRIPT FLUSH`).
//!
//! A call is written straight into one command buffer: its keys are held as
//! borrowed names until the first argument (the command counts them before
//! it lists them), then every key and argument is written once.
//! (`redis::Script` copies each key and argument into a vector of its own,
//! then into the command: most of a script call's client-side cost.)

use redis::{
    Cmd, ConnectionLike, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind, ToRedisArgs,
};

/// A Lua script and its digest.
pub(crate) struct LuaScript {
    script: redis::Script,
}

/// The most keys a script here takes (an idempotency claim: its record
/// and waiters marker): a call's key list starts this big.
const MOST_KEYS: usize = 2;

/// Arguments, and their bytes, a call usually adds after its keys: the
/// command's first capacity.
const USUAL_ARGS: usize = 8;
const USUAL_ARGS_BYTES: usize = 128;

impl LuaScript {
    pub fn new(code: &str) -> Self {
        LuaScript {
            script: redis::Script::new(code),
        }
    }

    /// Starts a call whose first key is `key`.
    pub fn key<'a>(&'a self, key: &'a str) -> KeysCall<'a> {
        let mut keys = Vec::with_capacity(MOST_KEYS);
        keys.push(key);
        KeysCall { script: self, keys }
    }
}

/// A script call while its keys are named.
pub(crate) struct KeysCall<'a> {
    script: &'a LuaScript,
    keys: Vec<&'a str>,
}

impl<'a> KeysCall<'a> {
    /// Names one more key.
    pub fn key(mut self, key: &'a str) -> Self {
        self.keys.push(key);
        self
    }

    /// Ends the keys and adds the first argument.
    pub fn arg<T: ToRedisArgs>(self, arg: T) -> ArgsCall<'a> {
        self.command().arg(arg)
    }

    /// Runs the call, which has keys only.
    pub fn invoke<T: FromRedisValue>(self, con: &mut dyn ConnectionLike) -> RedisResult<T> {
        self.command().invoke(con)
    }

    fn command(self) -> ArgsCall<'a> {
        let keys_len: usize = self.keys.iter().map(|key| key.len()).sum();
        let mut cmd = Cmd::with_capacity(
            3 + self.keys.len() + USUAL_ARGS,
            64 + keys_len + USUAL_ARGS_BYTES,
        );
        cmd.arg("EVALSHA")
            .arg(self.script.script.get_hash())
            .arg(self.keys.len());
        for key in &self.keys {
            cmd.arg(*key);
        }
        ArgsCall {
            script: self.script,
            cmd,
        }
    }
}

/// A script call while its arguments are added.
pub(crate) struct ArgsCall<'a> {
    script: &'a LuaScript,
    cmd: Cmd,
}

impl ArgsCall<'_> {
    /// Adds one more argument.
    pub fn arg<T: ToRedisArgs>(mut self, arg: T) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Runs the call: by digest, and once more after loading the script
    /// when the server does not know it.
    pub fn invoke<T: FromRedisValue>(self, con: &mut dyn ConnectionLike) -> RedisResult<T> {
        match self.cmd.query(con) {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.script.load(con)?;
                self.cmd.query(con)
            }
            reply => reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_the_evalsha_command_with_its_keys_then_its_arguments() {
        let script = LuaScript::new("return KEYS[1]");
        let call = script.key("k1").key("k2").arg("a").arg(7);
        let packed = call.cmd.get_packed_command();
        let expected = format!(
            "*7\r\n$7\r\nEVALSHA\r\n$40\r\n{}\r\n$1\r\n2\r\n$2\r\nk1\r\n$2\r\nk2\r\n$1\r\na\r\n$1\r\n7\r\n",
            script.script.get_hash()
        );
        assert_eq!(String::from_utf8(packed).unwrap(), expected);
    }
}
