//! Pipelines described in a small JSON file (feature `spec`): the variables with their
//! declarations, the operators with their inputs and outputs, as Clara's operator definitions
//! do. One parser serves every language (the C and Python bindings enable the feature); the core
//! without it depends on no JSON library.
//!
//! ```
//! # let dir = std::env::temp_dir().join(format!("shmpool-store-specdoc-{}", std::process::id()));
//! use shmpool::store::{Pipeline, Store};
//! let pipeline = Pipeline::parse(r#"{
//!   "variables": {
//!     "image": {"dtype": "f32", "shape": [-1, 64, 64], "capacity": 1048576},
//!     "label": {"kind": "string", "capacity": 64}
//!   },
//!   "operators": {
//!     "loader": {"outputs": ["image"]},
//!     "model": {"inputs": ["image"], "outputs": ["label"]}
//!   }
//! }"#)?;
//! let store = Store::open_in("doc-spec", Some(&dir))?;
//! let model = pipeline.operator(&store, "model")?;
//! assert_eq!((model.inputs(), model.outputs()), (&["image".to_string()][..], &["label".to_string()][..]));
//! assert!(pipeline.operator(&store, "nope").is_err());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), shmpool::Error>(())
//! ```

use super::decl::{check_name, Decl, Kind};
use super::op::Operator;
use super::Store;
use crate::{DType, Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// The variables and operators of a pipeline.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    variables: Vec<(String, Decl)>,
    operators: Vec<(String, Vec<String>, Vec<String>)>,
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::invalid(format!("pipeline definition: {what}"))
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| bad(format!("{what} must be an object")))
}

fn names(v: Option<&Value>, what: &str) -> Result<Vec<String>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = v.as_array().ok_or_else(|| bad(format!("{what} must be a list of names")))?;
    list.iter()
        .map(|n| {
            let n = n.as_str().ok_or_else(|| bad(format!("{what} must be a list of names")))?;
            Ok(check_name(n)?.to_string())
        })
        .collect()
}

fn decl(name: &str, v: &Value) -> Result<Decl> {
    let fields = object(v, &format!("variable {name:?}"))?;
    let text = |key: &str| fields.get(key).map(|v| v.as_str().ok_or_else(|| bad(format!("{name}.{key} must be text"))));
    let number =
        |key: &str| fields.get(key).map(|v| v.as_u64().ok_or_else(|| bad(format!("{name}.{key} must be a number"))));
    let kind = match text("kind").transpose()?.unwrap_or("array") {
        "array" => Kind::Array,
        "string" => Kind::String,
        "i64" => Kind::I64,
        "f64" => Kind::F64,
        "bool" => Kind::Bool,
        other => return Err(bad(format!("{name}.kind {other:?}: use array, string, i64, f64 or bool"))),
    };
    let mut decl = match kind {
        Kind::Array => {
            let dtype = text("dtype").ok_or_else(|| bad(format!("{name}.dtype is missing")))??;
            let dtype = DType::from_name(dtype).ok_or_else(|| bad(format!("{name}.dtype {dtype:?} is unknown")))?;
            let shape =
                fields.get("shape").and_then(Value::as_array).ok_or_else(|| bad(format!("{name}.shape is missing")))?;
            let dims = shape
                .iter()
                .map(|d| d.as_i64().ok_or_else(|| bad(format!("{name}.shape must hold integers"))))
                .collect::<Result<Vec<_>>>()?;
            if dims.contains(&-1) && !fields.contains_key("capacity") {
                return Err(bad(format!("{name}.capacity is missing (needed with a dynamic shape)")));
            }
            Decl::array(dtype, &dims)
        }
        Kind::String => Decl::string(number("capacity").ok_or_else(|| bad(format!("{name}.capacity is missing")))??),
        scalar => Decl::scalar(scalar),
    };
    if let Some(capacity) = number("capacity").transpose()? {
        decl = decl.capacity(capacity);
    }
    if let Some(versions) = number("versions").transpose()? {
        decl = decl.versions(usize::try_from(versions).map_err(|_| bad("versions"))?);
    }
    decl.check()?;
    Ok(decl)
}

impl Pipeline {
    /// Parses a definition: `{"variables": {NAME: {...}}, "operators": {NAME: {"inputs": [...],
    /// "outputs": [...]}}}`. A variable has `kind` (`array` (default), `string`, `i64`, `f64`,
    /// `bool`), and for arrays `dtype` and `shape` (`-1`: dynamic); `capacity` in bytes (needed
    /// for strings and dynamic shapes); optionally `versions`. Every name an operator uses must
    /// be a variable.
    pub fn parse(json: &str) -> Result<Pipeline> {
        let root: Value = serde_json::from_str(json).map_err(bad)?;
        let root = object(&root, "the definition")?;
        let mut pipeline = Pipeline::default();
        if let Some(vars) = root.get("variables") {
            for (name, v) in object(vars, "variables")? {
                check_name(name)?;
                pipeline.variables.push((name.clone(), decl(name, v)?));
            }
        }
        if let Some(ops) = root.get("operators") {
            for (name, v) in object(ops, "operators")? {
                check_name(name)?;
                let fields = object(v, &format!("operator {name:?}"))?;
                let inputs = names(fields.get("inputs"), &format!("{name}.inputs"))?;
                let outputs = names(fields.get("outputs"), &format!("{name}.outputs"))?;
                if let Some(unknown) = inputs.iter().chain(&outputs).find(|n| pipeline.variable(n).is_none()) {
                    return Err(bad(format!("operator {name:?} uses {unknown:?}, which is not a variable")));
                }
                pipeline.operators.push((name.clone(), inputs, outputs));
            }
        }
        Ok(pipeline)
    }

    /// Reads and parses the definition in file `path`.
    pub fn load(path: &Path) -> Result<Pipeline> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        Pipeline::parse(&text)
    }

    /// The declaration of variable `name`.
    pub fn variable(&self, name: &str) -> Option<&Decl> {
        self.variables.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    /// The names of the operators.
    pub fn operators(&self) -> impl Iterator<Item = &str> {
        self.operators.iter().map(|(n, _, _)| n.as_str())
    }

    /// Operator `name` on `store`, its inputs and outputs declared as the definition says.
    pub fn operator(&self, store: &Store, name: &str) -> Result<Operator> {
        let (_, inputs, outputs) =
            self.operators.iter().find(|(n, _, _)| n == name).ok_or_else(|| bad(format!("no operator {name:?}")))?;
        let decl_of = |n: &String| self.variable(n).cloned().ok_or_else(|| bad(n));
        for input in inputs {
            store.declare(input, &decl_of(input)?)?;
        }
        let outputs = outputs.iter().map(|n| Ok((n.as_str(), decl_of(n)?))).collect::<Result<Vec<_>>>()?;
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Operator::new(store, name, &inputs, &outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_definitions_are_refused_with_a_reason() {
        for (json, why) in [
            ("[]", "must be an object"),
            ("{\"variables\": {\"x\": {\"dtype\": \"f33\", \"shape\": [1]}}}", "unknown"),
            ("{\"variables\": {\"x\": {\"kind\": \"string\"}}}", "capacity is missing"),
            ("{\"variables\": {\"x\": {\"dtype\": \"u8\", \"shape\": [-1]}}}", "capacity"),
            ("{\"variables\": {\"a b\": {\"kind\": \"i64\"}}}", "name"),
            ("{\"operators\": {\"op\": {\"inputs\": [\"ghost\"]}}}", "not a variable"),
            ("{\"variables\": {\"x\": {\"kind\": \"i64\"}}, \"operators\": {\"op\": {\"inputs\": \"x\"}}}", "list"),
            ("{", "EOF"),
        ] {
            let e = Pipeline::parse(json).unwrap_err().to_string();
            assert!(e.contains(why), "{json}: {e}");
        }
    }

    #[test]
    fn variables_default_sensibly() {
        let p = Pipeline::parse(
            r#"{"variables": {"img": {"dtype": "u8", "shape": [2, 3]}, "n": {"kind": "i64", "versions": 5}}}"#,
        )
        .unwrap();
        assert_eq!(p.variable("img").unwrap().capacity, 6);
        assert_eq!(p.variable("n").unwrap().versions, 5);
        assert!(p.variable("m").is_none());
    }
}
