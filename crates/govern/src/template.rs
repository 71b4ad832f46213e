//! The governance template: the metadata every registered model must carry (`required:`) and
//! may carry (`optional:`), each field with a type (`string`, `number`, `date`, `url`) or a
//! list of allowed values, and more per model kind (`kinds:`, chosen by the metadata's `kind`
//! field). A model's metadata is a flat map of those fields. Checking gives every missing or
//! invalid field at once, each with what to write instead.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::Error;

/// A model's metadata: field name to value (text, number or boolean).
pub type Metadata = BTreeMap<String, Value>;

/// What one field must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// Any non-empty text (a number is taken as its text).
    String,
    /// A number.
    Number,
    /// A calendar date, `YYYY-MM-DD` (or an RFC 3339 time).
    Date,
    /// An address with a scheme: `https://…`, `s3://…`, `file:///…`.
    Url,
    /// One of these values.
    OneOf(Vec<String>),
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::String => f.write_str("string"),
            Rule::Number => f.write_str("number"),
            Rule::Date => f.write_str("date"),
            Rule::Url => f.write_str("url"),
            Rule::OneOf(values) => write!(f, "one of {}", values.join(", ")),
        }
    }
}

/// The required and optional metadata fields, those each model kind adds, and the
/// environments builds are promoted to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    /// Required of every model.
    pub required: BTreeMap<String, Rule>,
    pub optional: BTreeMap<String, Rule>,
    /// Fields a kind of model adds (`kinds: {classifier: {required: …}}`); when there are
    /// kinds, every model names its own in the metadata field [`KIND_FIELD`].
    pub kinds: BTreeMap<String, KindFields>,
    pub environments: BTreeMap<String, Environment>,
}

/// The metadata field that names a model's kind when the template has `kinds:`.
pub const KIND_FIELD: &str = "kind";

/// The fields one kind of model adds to the template's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KindFields {
    pub required: BTreeMap<String, Rule>,
    pub optional: BTreeMap<String, Rule>,
}

/// An environment builds are promoted to (`environments:` in the template).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Environment {
    /// Distinct approvers a promotion needs.
    pub approvals: u32,
    /// The environment a build must have been promoted to before this one.
    pub after: Option<String>,
}

/// `environments:`: a map from name to `approvals:` (a count) and `after:` (an earlier
/// environment's name), both optional.
fn parse_environments(section: &serde_yaml::Value) -> Result<BTreeMap<String, Environment>, String> {
    let serde_yaml::Value::Mapping(map) = section else {
        return if section.is_null() {
            Ok(BTreeMap::new())
        } else {
            Err("must map environment names to their settings".into())
        };
    };
    let mut environments = BTreeMap::new();
    for (name, settings) in map {
        let Some(name) = name.as_str() else { return Err(format!("{name:?} is not a name")) };
        let mut environment = Environment::default();
        match settings {
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Mapping(settings) => {
                for (key, value) in settings {
                    match (key.as_str(), value) {
                        (Some("approvals"), serde_yaml::Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 100) => {
                            environment.approvals = n.as_u64().unwrap_or_default() as u32;
                        }
                        (Some("after"), serde_yaml::Value::String(after)) => environment.after = Some(after.clone()),
                        (Some("approvals"), _) => {
                            return Err(format!("`{name}.approvals` must be a count from 0 to 100"))
                        }
                        (Some("after"), _) => return Err(format!("`{name}.after` must name an environment")),
                        _ => return Err(format!("`{name}` has {key:?}; an environment has `approvals:` and `after:`")),
                    }
                }
            }
            _ => return Err(format!("`{name}` must be a map with `approvals:` and `after:`")),
        }
        environments.insert(name.to_string(), environment);
    }
    for (name, environment) in &environments {
        if let Some(after) = &environment.after {
            if !environments.contains_key(after) {
                return Err(format!("`{name}.after` names `{after}`, which is not an environment here"));
            }
        }
    }
    Ok(environments)
}

/// One field that does not meet the template, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldProblem {
    pub field: String,
    /// What is wrong and what to write instead.
    pub problem: String,
}

impl std::fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl Template {
    /// Reads a template file (see the module's comment).
    pub fn load(path: &Path) -> Result<Template, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Invalid {
            field: path.display().to_string(),
            message: format!("cannot read the governance template ({e})"),
        })?;
        Template::parse(&text, &path.display().to_string())
    }

    /// Parses a template's YAML; `source` names it in errors.
    pub fn parse(yaml: &str, source: &str) -> Result<Template, Error> {
        let invalid = |message: String| Error::Invalid { field: source.to_string(), message };
        let value: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| invalid(format!("is not YAML ({e})")))?;
        let serde_yaml::Value::Mapping(map) = value else {
            return Err(invalid("must be a map with `required:` and `optional:` sections".into()));
        };
        let mut template = Template::default();
        for (key, section) in map {
            let name = key.as_str().unwrap_or_default().to_string();
            match name.as_str() {
                "required" => template.required = parse_fields(&section, &name).map_err(invalid)?,
                "optional" => template.optional = parse_fields(&section, &name).map_err(invalid)?,
                "kinds" => template.kinds = parse_kinds(&section).map_err(|m| invalid(format!("`kinds`: {m}")))?,
                "environments" => {
                    template.environments =
                        parse_environments(&section).map_err(|m| invalid(format!("`environments`: {m}")))?;
                }
                _ => {
                    return Err(invalid(format!(
                        "has a section {key:?}; a template has `required:`, `optional:`, `kinds:` and \
                         `environments:` only"
                    )))
                }
            }
        }
        if let Some(both) = template.required.keys().find(|f| template.optional.contains_key(*f)) {
            return Err(invalid(format!("`{both}` is both required and optional; keep it in one section")));
        }
        if !template.kinds.is_empty() {
            if template.required.contains_key(KIND_FIELD) || template.optional.contains_key(KIND_FIELD) {
                return Err(invalid(format!(
                    "`{KIND_FIELD}` names the model kind when there are `kinds:`; do not list it as a field"
                )));
            }
            for (kind, fields) in &template.kinds {
                let again = fields.required.keys().chain(fields.optional.keys()).find(|f| {
                    template.required.contains_key(*f) || template.optional.contains_key(*f) || *f == KIND_FIELD
                });
                if let Some(field) = again {
                    return Err(invalid(format!(
                        "`kinds.{kind}.{field}` is a field of every model already; name it in one place"
                    )));
                }
            }
        }
        Ok(template)
    }

    /// Every field of `metadata` that does not meet the template: required fields missing or
    /// empty, values of the wrong type or not among the allowed ones, and fields the template
    /// does not name.
    pub fn check(&self, metadata: &Metadata) -> Vec<FieldProblem> {
        let (required, optional, mut problems) = self.fields_of(metadata);
        for (field, rule) in &required {
            match metadata.get(field).filter(|v| !is_empty(v)) {
                None => problems.push(FieldProblem {
                    field: field.clone(),
                    problem: format!("missing; it is required ({})", hint(rule)),
                }),
                Some(value) => problems.extend(check_value(field, rule, value)),
            }
        }
        for (field, value) in metadata {
            if required.contains_key(field) || (field == KIND_FIELD && !self.kinds.is_empty()) {
                continue;
            }
            match optional.get(field) {
                Some(rule) if !is_empty(value) => problems.extend(check_value(field, rule, value)),
                Some(_) => {}
                None => problems.push(FieldProblem {
                    field: field.clone(),
                    problem: format!(
                        "is not in the governance template; its fields{} are {}",
                        metadata_kind(metadata)
                            .filter(|k| self.kinds.contains_key(*k))
                            .map_or_else(String::new, |k| format!(" for a {k}")),
                        field_names(&required, &optional)
                    ),
                }),
            }
        }
        problems.sort_by(|a, b| a.field.cmp(&b.field));
        problems
    }

    /// The names of the required fields that `metadata` lacks or holds invalid values for.
    pub fn missing(&self, metadata: &Metadata) -> Vec<String> {
        let (required, _, _) = self.fields_of(metadata);
        let problems = self.check(metadata);
        problems
            .into_iter()
            .map(|p| p.field)
            .filter(|f| required.contains_key(f) || (f == KIND_FIELD && !self.kinds.is_empty()))
            .collect()
    }

    /// The required fields of a model of which nothing is known: every model's, and its kind.
    pub fn required_of_all(&self) -> Vec<String> {
        let mut fields: Vec<String> = self.required.keys().cloned().collect();
        if !self.kinds.is_empty() {
            fields.push(KIND_FIELD.to_string());
            fields.sort();
        }
        fields
    }

    /// The required and optional fields for `metadata`'s kind (every model's, and its kind's
    /// when it names a kind of the template), and the problem with its kind field, if any.
    fn fields_of(&self, metadata: &Metadata) -> (BTreeMap<String, Rule>, BTreeMap<String, Rule>, Vec<FieldProblem>) {
        let (mut required, mut optional) = (self.required.clone(), self.optional.clone());
        let mut problems = Vec::new();
        if self.kinds.is_empty() {
            return (required, optional, problems);
        }
        let kinds: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
        match metadata_kind(metadata).map(|k| (k, self.kinds.get(k))) {
            Some((_, Some(fields))) => {
                required.extend(fields.required.clone());
                optional.extend(fields.optional.clone());
            }
            Some((kind, None)) => problems.push(FieldProblem {
                field: KIND_FIELD.to_string(),
                problem: format!("{kind:?} is not a model kind of the template; write one of {}", kinds.join(", ")),
            }),
            None if metadata.get(KIND_FIELD).is_some_and(|v| !is_empty(v)) => problems.push(FieldProblem {
                field: KIND_FIELD.to_string(),
                problem: format!("{} is not a kind name; write one of {}", metadata[KIND_FIELD], kinds.join(", ")),
            }),
            None => problems.push(FieldProblem {
                field: KIND_FIELD.to_string(),
                problem: format!("missing; it is required (write one of {})", kinds.join(", ")),
            }),
        }
        (required, optional, problems)
    }
}

/// The kind a model's metadata names.
fn metadata_kind(metadata: &Metadata) -> Option<&str> {
    metadata.get(KIND_FIELD).and_then(Value::as_str).map(str::trim).filter(|k| !k.is_empty())
}

fn field_names(required: &BTreeMap<String, Rule>, optional: &BTreeMap<String, Rule>) -> String {
    let names: Vec<&str> = required.keys().chain(optional.keys()).map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A `required:` or `optional:` section: field name to a rule.
fn parse_fields(section: &serde_yaml::Value, name: &str) -> Result<BTreeMap<String, Rule>, String> {
    let section = match section {
        serde_yaml::Value::Mapping(section) => section,
        serde_yaml::Value::Null => return Ok(BTreeMap::new()),
        _ => return Err(format!("`{name}:` must map field names to a type or a list of allowed values")),
    };
    let mut fields = BTreeMap::new();
    for (field, rule) in section {
        let Some(field) = field.as_str() else {
            return Err(format!("`{name}:` has a field name {field:?} that is not text"));
        };
        let rule = parse_rule(rule).map_err(|m| format!("`{name}.{field}`: {m}"))?;
        fields.insert(field.to_string(), rule);
    }
    Ok(fields)
}

/// `kinds:`: a map from kind name to its own `required:` and `optional:` sections.
fn parse_kinds(section: &serde_yaml::Value) -> Result<BTreeMap<String, KindFields>, String> {
    let serde_yaml::Value::Mapping(map) = section else {
        return if section.is_null() {
            Ok(BTreeMap::new())
        } else {
            Err("must map model kinds to their fields".into())
        };
    };
    let mut kinds = BTreeMap::new();
    for (kind, sections) in map {
        let Some(kind) = kind.as_str().filter(|k| !k.trim().is_empty()) else {
            return Err(format!("{kind:?} is not a kind name"));
        };
        let mut fields = KindFields::default();
        match sections {
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Mapping(sections) => {
                for (key, section) in sections {
                    let name = format!("{kind}.{}", key.as_str().unwrap_or_default());
                    match key.as_str() {
                        Some("required") => fields.required = parse_fields(section, &name)?,
                        Some("optional") => fields.optional = parse_fields(section, &name)?,
                        _ => return Err(format!("`{kind}` has {key:?}; a kind has `required:` and `optional:`")),
                    }
                }
            }
            _ => return Err(format!("`{kind}` must be a map with `required:` and `optional:`")),
        }
        if let Some(both) = fields.required.keys().find(|f| fields.optional.contains_key(*f)) {
            return Err(format!("`{kind}.{both}` is both required and optional; keep it in one section"));
        }
        kinds.insert(kind.to_string(), fields);
    }
    Ok(kinds)
}

/// A metadata file: a flat YAML map of field to text, number or boolean.
pub fn parse_metadata(yaml: &str, source: &str) -> Result<Metadata, Error> {
    let invalid = |message: String| Error::Invalid { field: source.to_string(), message };
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(|e| invalid(format!("is not YAML ({e})")))?;
    let serde_yaml::Value::Mapping(map) = value else {
        return Err(invalid("must be a flat map of metadata fields (`owner: ana`)".into()));
    };
    let mut metadata = Metadata::new();
    for (key, value) in map {
        let Some(field) = key.as_str() else {
            return Err(invalid(format!("has a field name {key:?} that is not text")));
        };
        let value = match value {
            serde_yaml::Value::Null => Value::Null,
            serde_yaml::Value::Bool(b) => Value::Bool(b),
            serde_yaml::Value::String(s) => Value::String(s),
            serde_yaml::Value::Number(n) => serde_json::to_value(&n).map_err(|e| invalid(format!("`{field}`: {e}")))?,
            _ => {
                return Err(invalid(format!(
                    "`{field}` holds a list or map; metadata values are text, numbers or booleans"
                )))
            }
        };
        metadata.insert(field.to_string(), value);
    }
    Ok(metadata)
}

fn parse_rule(rule: &serde_yaml::Value) -> Result<Rule, String> {
    match rule {
        serde_yaml::Value::String(kind) => match kind.as_str() {
            "string" => Ok(Rule::String),
            "number" => Ok(Rule::Number),
            "date" => Ok(Rule::Date),
            "url" => Ok(Rule::Url),
            other => Err(format!("unknown type `{other}`; use string, number, date, url or a list of allowed values")),
        },
        serde_yaml::Value::Sequence(values) if !values.is_empty() => values
            .iter()
            .map(|v| match v {
                serde_yaml::Value::String(s) => Ok(s.clone()),
                serde_yaml::Value::Number(n) => Ok(n.to_string()),
                serde_yaml::Value::Bool(b) => Ok(b.to_string()),
                _ => Err("allowed values are text, numbers or booleans".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Rule::OneOf),
        _ => Err("must be a type (string, number, date, url) or a non-empty list of allowed values".into()),
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

/// A value as text: strings as they are, numbers and booleans as written.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// What to write for a rule.
fn hint(rule: &Rule) -> String {
    match rule {
        Rule::String => "write some text".into(),
        Rule::Number => "write a number".into(),
        Rule::Date => "write a date, YYYY-MM-DD".into(),
        Rule::Url => "write an address such as https://…".into(),
        Rule::OneOf(values) => format!("write one of {}", values.join(", ")),
    }
}

fn check_value(field: &str, rule: &Rule, value: &Value) -> Option<FieldProblem> {
    let ok = match (rule, value) {
        (Rule::String, v) => text(v).is_some(),
        (Rule::Number, v) => v.as_f64().is_some_and(f64::is_finite),
        (Rule::Date, Value::String(s)) => is_date(s),
        (Rule::Url, Value::String(s)) => is_url(s),
        (Rule::OneOf(values), v) => text(v).is_some_and(|t| values.contains(&t)),
        _ => false,
    };
    (!ok).then(|| FieldProblem { field: field.to_string(), problem: format!("{value} is not valid; {}", hint(rule)) })
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() || chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// `scheme://something` (or `scheme:` with a path for `file:`), the scheme a letter then
/// letters, digits, `+`, `-` or `.`.
fn is_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else { return false };
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    scheme_ok && rest.starts_with("//") && rest.len() > 2 && !s.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "required:\n  owner: string\n  version: string\n  training_date: date\n  \
                            risk_tier: [low, medium, high]\n  documentation: url\noptional:\n  accuracy: number\n  \
                            approver: string\n";

    fn metadata(yaml: &str) -> Metadata {
        parse_metadata(yaml, "m.yaml").unwrap()
    }

    #[test]
    fn complete_metadata_meets_the_template() {
        let t = Template::parse(TEMPLATE, "t.yaml").unwrap();
        assert_eq!(t.required.len(), 5);
        assert_eq!(t.optional.get("accuracy"), Some(&Rule::Number));
        let m = metadata(
            "owner: ana\nversion: 3\ntraining_date: 2026-11-01\nrisk_tier: low\n\
             documentation: https://wiki.example/churn\naccuracy: 0.91\n",
        );
        assert_eq!(t.check(&m), vec![]);
        assert!(t.missing(&m).is_empty());
    }

    #[test]
    fn every_missing_and_invalid_field_is_named_with_what_to_write() {
        let t = Template::parse(TEMPLATE, "t.yaml").unwrap();
        let m = metadata(
            "owner: ''\ntraining_date: yesterday\nrisk_tier: extreme\ndocumentation: wiki/churn\n\
             accuracy: high\ncolour: blue\n",
        );
        let problems = t.check(&m);
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["accuracy", "colour", "documentation", "owner", "risk_tier", "training_date", "version"]);
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text[0], "accuracy: \"high\" is not valid; write a number");
        assert!(text[1].starts_with("colour: is not in the governance template; its fields are documentation, owner"));
        assert_eq!(text[3], "owner: missing; it is required (write some text)");
        assert_eq!(text[4], "risk_tier: \"extreme\" is not valid; write one of low, medium, high");
        assert_eq!(text[5], "training_date: \"yesterday\" is not valid; write a date, YYYY-MM-DD");
        assert_eq!(t.missing(&m), ["documentation", "owner", "risk_tier", "training_date", "version"]);
        let err = Error::Template { problems }.to_string();
        assert!(err.contains("owner: missing") && err.contains("version: missing"), "{err}");
    }

    #[test]
    fn bad_templates_and_metadata_files_are_refused_by_name() {
        for (yaml, expected) in [
            ("- a\n", "must be a map"),
            ("mandatory:\n  owner: string\n", "has a section"),
            ("required:\n  owner: text\n", "`required.owner`: unknown type `text`"),
            ("required:\n  tier: []\n", "non-empty list"),
            ("required:\n  owner: string\noptional:\n  owner: string\n", "both required and optional"),
        ] {
            let err = Template::parse(yaml, "t.yaml").unwrap_err().to_string();
            assert!(err.starts_with("t.yaml: ") && err.contains(expected), "{err}");
        }
        assert!(Template::parse("required:\noptional:\n", "t.yaml").unwrap().required.is_empty());
        let err = parse_metadata("owner: [a, b]\n", "m.yaml").unwrap_err().to_string();
        assert!(err.contains("`owner` holds a list"), "{err}");
        assert!(parse_metadata("- owner\n", "m.yaml").unwrap_err().to_string().contains("flat map"));
    }

    #[test]
    fn environments_and_their_approvals() {
        let t = Template::parse(
            "required:\n  owner: string\nenvironments:\n  staging:\n    approvals: 1\n  prod:\n    approvals: 2\n    after: staging\n  dev:\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(t.environments["prod"], Environment { approvals: 2, after: Some("staging".into()) });
        assert_eq!(t.environments["dev"], Environment::default());
        for (yaml, expected) in [
            ("environments:\n  prod:\n    after: qa\n", "`prod.after` names `qa`, which is not an environment here"),
            ("environments:\n  prod:\n    approvals: -1\n", "`prod.approvals` must be a count"),
            ("environments:\n  prod:\n    approvers: 2\n", "an environment has `approvals:` and `after:`"),
        ] {
            let err = Template::parse(yaml, "t.yaml").unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn each_model_kind_adds_its_own_fields() {
        let t = Template::parse(
            "required:\n  owner: string\nkinds:\n  classifier:\n    required:\n      decision_threshold: number\n    \
             optional:\n      classes: string\n  regressor:\n    required:\n      target_unit: string\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(t.kinds["classifier"].required.get("decision_threshold"), Some(&Rule::Number));
        assert_eq!(t.required_of_all(), ["kind", "owner"]);
        let classifier = metadata("owner: ana\nkind: classifier\ndecision_threshold: 0.4\nclasses: yes/no\n");
        assert_eq!(t.check(&classifier), vec![]);
        // A regressor needs its own field and may not carry a classifier's.
        let regressor = metadata("owner: ana\nkind: regressor\nclasses: yes/no\n");
        let problems: Vec<String> = t.check(&regressor).iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("classes: is not in the governance template; its fields for a regressor are"));
        assert_eq!(problems[1], "target_unit: missing; it is required (write some text)");
        assert_eq!(t.missing(&regressor), ["target_unit"]);
        // No kind, or one the template does not have: said, with the kinds to choose from.
        let none = metadata("owner: ana\n");
        assert_eq!(t.check(&none)[0].to_string(), "kind: missing; it is required (write one of classifier, regressor)");
        assert_eq!(t.missing(&none), ["kind"]);
        let odd = metadata("owner: ana\nkind: ranker\n");
        assert_eq!(
            t.check(&odd)[0].to_string(),
            "kind: \"ranker\" is not a model kind of the template; write one of classifier, regressor"
        );
        for (yaml, expected) in [
            ("kinds:\n  c:\n    mandatory:\n      a: string\n", "a kind has `required:` and `optional:`"),
            ("required:\n  kind: string\nkinds:\n  c:\n", "`kind` names the model kind"),
            ("required:\n  owner: string\nkinds:\n  c:\n    required:\n      owner: string\n", "`kinds.c.owner`"),
            ("kinds:\n  c:\n    required:\n      a: colour\n", "`c.required.a`: unknown type `colour`"),
        ] {
            let err = Template::parse(yaml, "t.yaml").unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn dates_and_addresses() {
        assert!(is_date("2026-02-28") && is_date("2026-11-30T10:00:00Z"));
        assert!(!is_date("2026-02-30") && !is_date("30/11/2026"));
        assert!(is_url("https://a.example/x") && is_url("s3://bucket/key") && is_url("file:///tmp/m.pkl"));
        assert!(!is_url("wiki/x") && !is_url("https://") && !is_url("1http://a") && !is_url("https://a b"));
    }
}
