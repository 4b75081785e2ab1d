//! Child processes of this binary (hidden subcommands) and the lines they report on stdout:
//! `ready`, `progress N`, `result JSON`.

use crate::{CliResult, Failure};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Instant;

/// What a child said: a line, or the end of its output (it exited).
pub enum Report {
    Line(usize, String),
    Closed(usize),
}

/// The children of one run; dropping it kills those still running.
pub struct Peers {
    children: Vec<(String, Child)>,
    tx: Sender<Report>,
    rx: Receiver<Report>,
    /// Reports set aside by [`Peers::expect`] for later [`Peers::next`] calls.
    backlog: VecDeque<Report>,
}

impl Peers {
    pub fn new() -> Self {
        let (tx, rx) = mpsc::channel();
        Peers { children: Vec::new(), tx, rx, backlog: VecDeque::new() }
    }

    /// Starts `shmpool ARGS…` as peer `name`; returns its number.
    pub fn spawn(&mut self, name: &str, args: &[String]) -> CliResult<usize> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe).args(args).stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
        let id = self.children.len();
        let stdout = child.stdout.take().expect("piped stdout");
        let tx = self.tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(Report::Line(id, line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Report::Closed(id));
        });
        self.children.push((name.to_string(), child));
        Ok(id)
    }

    pub fn name(&self, id: usize) -> &str {
        &self.children[id].0
    }

    pub fn is_running(&mut self, id: usize) -> bool {
        matches!(self.children[id].1.try_wait(), Ok(None))
    }

    /// The next report, or `None` once `deadline` passes.
    pub fn next(&mut self, deadline: Instant) -> Option<Report> {
        self.backlog.pop_front().or_else(|| self.receive(deadline))
    }

    fn receive(&self, deadline: Instant) -> Option<Report> {
        self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).ok()
    }

    /// Waits for the line of peer `id` that starts with `word`; returns the rest. This peer's other
    /// lines are dropped; other peers' reports are kept for [`Peers::next`].
    pub fn expect(&mut self, id: usize, word: &str, deadline: Instant) -> CliResult<String> {
        let mut kept = VecDeque::new();
        let found = loop {
            let report = match self.backlog.pop_front() {
                Some(report) => report,
                None => match self.receive(deadline) {
                    Some(report) => report,
                    None => break Err(Failure::error(format!("{} did not say {word:?} in time", self.name(id)))),
                },
            };
            match report {
                Report::Line(from, line) if from == id => {
                    if let Some(rest) = line.strip_prefix(word) {
                        break Ok(rest.trim().to_string());
                    }
                }
                Report::Closed(from) if from == id => {
                    break Err(Failure::error(format!("{} exited before saying {word:?}", self.name(id))));
                }
                other => kept.push_back(other),
            }
        };
        kept.append(&mut self.backlog);
        self.backlog = kept;
        found
    }

    /// Waits for every child to exit, up to `deadline`; fails if one did not exit successfully.
    pub fn wait_all(&mut self, deadline: Instant) -> CliResult {
        for (name, child) in &mut self.children {
            loop {
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        return Err(Failure::error(format!("{name} failed: {status}")));
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(Failure::error(format!("{name} did not finish in time")));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        Ok(())
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Child side: reports one line to the parent.
pub fn say(line: &str) -> CliResult {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
