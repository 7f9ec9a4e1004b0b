//! The guard shell: local servers a localnet or a test starts (chopsticks, SeaweedFS) run under
//! `sh`, which ends them when the process that started the shell is gone. A destructor does not
//! run after SIGKILL; this does.

/// The shell script: `prelude` first (it may `shift` its own arguments away), then the command
/// left in `"$@"` in the background with `redirect` applied; the child's pid is printed as
/// `ferrum-guard-child PID` on the shell's stdout; once the parent or the child is gone the
/// child is killed and `cleanup` runs.
pub fn script(prelude: &str, redirect: &str, cleanup: &str) -> String {
    format!(
        r#"{prelude}
"$@" {redirect} &
child=$!
echo "{CHILD_PREFIX}$child"
parent=$PPID
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill "$child" 2>/dev/null; wait "$child" 2>/dev/null
{cleanup}
"#
    )
}

/// The line prefix the guard prints before its child's pid.
pub const CHILD_PREFIX: &str = "ferrum-guard-child ";
