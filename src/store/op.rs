//! Operators: a named step of a pipeline with declared inputs and outputs. A run waits until
//! every input has a version newer than the one the last successful run consumed, hands out the
//! inputs read-only and the outputs writable, and publishes the outputs only on success.
//! Operators may start in any order, in any process or container sharing the directory.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("shmpool-store-opdoc-{}", std::process::id()));
//! use shmpool::{store::{Decl, Kind, Operator, Store}, DType};
//! use std::time::Duration;
//! let store = Store::open_in("doc-op", Some(&dir))?;
//! let mut source = Operator::new(&store, "source", &[], &[("n", Decl::scalar(Kind::I64))])?;
//! let mut double = Operator::new(&store, "double", &["n"], &[("n2", Decl::scalar(Kind::I64))])?;
//! source.run(None, |_, out| out[0].set_i64(21))?;
//! double.run(Some(Duration::from_secs(1)), |inp, out| out[0].set_i64(2 * inp.get("n")?.i64()?))?;
//! assert_eq!(store.read("n2", None)?.i64()?, 42);
//! // Nothing new upstream: the next run times out, naming the input.
//! let e = double.run(Some(Duration::from_millis(10)), |_, _| Ok(())).unwrap_err();
//! assert_eq!(e.to_string(), "timed out waiting for input \"n\"");
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

use super::decl::{check_name, Decl};
use super::read::Version;
use super::write::WriteGuard;
use super::Store;
use crate::{Error, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A pipeline step bound to a store: its inputs, its outputs (declared on creation) and the
/// input versions its last successful run consumed.
#[derive(Debug)]
pub struct Operator {
    store: Store,
    name: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    consumed: Vec<u64>,
}

/// The inputs of one run, held read-only while this (or a shared version) lives.
#[derive(Debug)]
pub struct Inputs {
    names: Vec<String>,
    versions: Vec<Arc<Version>>,
}

impl Inputs {
    /// Input `name`.
    pub fn get(&self, name: &str) -> Result<&Version> {
        self.shared(name).map(|v| &**v)
    }

    /// Input `name`, shared (for bindings that hand it out beyond the run).
    pub fn shared(&self, name: &str) -> Result<&Arc<Version>> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.versions[i])
            .ok_or_else(|| Error::invalid(format!("{name:?} is not an input of this operator")))
    }

    /// The input names, in declaration order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// One run in progress: inputs held, outputs being written. [`Operator::commit`] publishes the
/// outputs; dropping it discards them.
#[derive(Debug)]
pub struct Execution {
    /// The inputs, read-only.
    pub inputs: Inputs,
    /// The outputs, in declaration order.
    pub outputs: Vec<WriteGuard>,
}

impl Operator {
    /// An operator named `name` reading `inputs` and writing `outputs`, which it declares now
    /// (inputs are declared by their writers, or by the declarative file).
    pub fn new(store: &Store, name: &str, inputs: &[&str], outputs: &[(&str, Decl)]) -> Result<Operator> {
        check_name(name)?;
        for input in inputs {
            check_name(input)?;
        }
        for (output, decl) in outputs {
            store.declare(output, decl)?;
        }
        Ok(Operator {
            store: store.clone(),
            name: name.to_string(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|(s, _)| s.to_string()).collect(),
            consumed: vec![0; inputs.len()],
        })
    }

    /// The operator's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its inputs.
    pub fn inputs(&self) -> &[String] {
        &self.inputs
    }

    /// Its outputs.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// Waits (up to `timeout` in all) until every input has a version newer than the one last
    /// consumed, then starts writing the outputs. A timeout is [`Error::InputTimeout`] naming
    /// the first input still missing.
    pub fn begin(&self, timeout: Option<Duration>) -> Result<Execution> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let left = || deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let mut versions = Vec::with_capacity(self.inputs.len());
        for (name, &consumed) in self.inputs.iter().zip(&self.consumed) {
            match self.store.read_newer(name, consumed, left()) {
                Ok(v) => versions.push(Arc::new(v)),
                Err(Error::Timeout) => return Err(Error::InputTimeout { name: name.clone() }),
                Err(e) => return Err(e),
            }
        }
        let outputs = self.outputs.iter().map(|name| self.store.write_timeout(name, left())).collect::<Result<_>>()?;
        Ok(Execution { inputs: Inputs { names: self.inputs.clone(), versions }, outputs })
    }

    /// Publishes the outputs of `execution` (begun by this operator) and records its input
    /// versions as consumed. Returns the outputs' new version numbers.
    pub fn commit(&mut self, execution: Execution) -> Result<Vec<u64>> {
        let Execution { inputs, outputs } = execution;
        if inputs.names != self.inputs
            || outputs.iter().map(WriteGuard::name).ne(self.outputs.iter().map(String::as_str))
        {
            return Err(Error::invalid(format!("not an execution of operator {:?}", self.name)));
        }
        let versions = outputs.into_iter().map(WriteGuard::commit).collect::<Result<Vec<_>>>()?;
        self.consumed = inputs.versions.iter().map(|v| v.version()).collect();
        Ok(versions)
    }

    /// One run: waits for new inputs, calls `step` with them and the outputs, and publishes the
    /// outputs if `step` succeeds (discards them if it fails). Returns what `step` returned.
    pub fn run<T>(
        &mut self,
        timeout: Option<Duration>,
        step: impl FnOnce(&Inputs, &mut [WriteGuard]) -> Result<T>,
    ) -> Result<T> {
        let mut execution = self.begin(timeout)?;
        let result = step(&execution.inputs, &mut execution.outputs)?;
        self.commit(execution)?;
        Ok(result)
    }
}
