//! A subset of Go's text/template, evaluated over JSON values, for `-o go-template` and the
//! table columns.
//!
//! Written here because the only Rust engine for Go's syntax (gtmpl) is unmaintained, and
//! calicoctl templates address Go struct fields (`.ObjectMeta.Name`, `.Spec.CIDR`): field
//! lookup here maps those to JSON keys (`ObjectMeta` is `metadata`, otherwise a
//! case-insensitive key match), so the same templates work on our JSON documents.
//!
//! Supported: text, `{{pipeline}}`, `{{if}}/{{else if}}/{{else}}/{{end}}`, `{{range}}`,
//! `{{with}}`, comments, `{{-`/`-}}` trimming, `$` (the root), string/raw-string/number/bool
//! literals, `|` pipelines, and the functions `join`, `joinAndTruncate`, `eq`, `ne`, `not`,
//! `and`, `or`, `len`, `index`, `print`, `printf` (`%s`, `%v`, `%d`, `%%`), `println`.

use serde_json::Value;

/// A template that failed to parse or execute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(String);

fn err<T>(msg: impl Into<String>) -> Result<T, TemplateError> {
    Err(TemplateError(msg.into()))
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Output(Pipeline),
    If {
        cond: Pipeline,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        over: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
    With {
        value: Pipeline,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

type Pipeline = Vec<Command>;

#[derive(Debug, Clone)]
struct Command {
    words: Vec<Operand>,
}

#[derive(Debug, Clone)]
enum Operand {
    /// `.A.B` (empty path is `.`); `from_root` for `$.A`.
    Field {
        path: Vec<String>,
        from_root: bool,
    },
    Literal(Value),
    Function(String),
    Sub(Pipeline),
}

impl Template {
    /// Parse template text.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let tokens = lex(text)?;
        let mut pos = 0;
        let (nodes, end) = parse_nodes(&tokens, &mut pos)?;
        if let Some(end) = end {
            return err(format!("unexpected {{{{{end}}}}}"));
        }
        Ok(Self { nodes })
    }

    /// Execute over `data`; a field missing from the data prints as nothing.
    pub fn execute(&self, data: &Value) -> Result<String, TemplateError> {
        self.run(data, None)
    }

    /// Execute over `data`, where a field missing from a resource is an error if `check` says
    /// the resource's type has no such field (as Go's templates fail on a struct), and prints
    /// as nothing if the field only has its zero value.
    pub fn execute_checked(
        &self,
        data: &Value,
        check: &FieldCheck,
    ) -> Result<String, TemplateError> {
        self.run(data, Some(check))
    }

    fn run(&self, data: &Value, check: Option<&FieldCheck>) -> Result<String, TemplateError> {
        let mut out = String::new();
        let cx = Cx { root: data, check };
        exec_nodes(&self.nodes, data, &cx, &mut out)?;
        Ok(out)
    }
}

/// Whether the type of the resource `resource`, at the JSON `path` inside it, has a field
/// named `field` (any case); None when it cannot tell.
pub type FieldCheck = dyn Fn(&Value, &[String], &str) -> Option<bool>;

/// What every node of one execution shares.
struct Cx<'a> {
    /// `$`.
    root: &'a Value,
    /// The type check for missing fields, if any.
    check: Option<&'a FieldCheck>,
}

enum Token {
    Text(String),
    Action(String),
}

fn lex(text: &str) -> Result<Vec<Token>, TemplateError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    let mut trim_next_text = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next_text {
            before = before.trim_start();
        }
        let after = &rest[start + 2..];
        let trim_left =
            after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n");
        if trim_left {
            before = before.trim_end();
        }
        if !before.is_empty() {
            tokens.push(Token::Text(before.to_owned()));
        }
        let Some(end) = find_action_end(after) else {
            return err("unclosed action");
        };
        let mut inner = &after[..end];
        if trim_left {
            inner = &inner[1..];
        }
        trim_next_text = inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-");
        if trim_next_text {
            inner = &inner[..inner.len() - 1];
        }
        tokens.push(Token::Action(inner.trim().to_owned()));
        rest = &after[end + 2..];
    }
    let tail = if trim_next_text {
        rest.trim_start()
    } else {
        rest
    };
    if !tail.is_empty() {
        tokens.push(Token::Text(tail.to_owned()));
    }
    Ok(tokens)
}

/// Index of the `}}` closing an action, skipping quoted strings.
fn find_action_end(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'`' {
                    i += 1;
                }
            }
            b'}' if bytes[i + 1] == b'}' => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parse nodes until `{{end}}` or `{{else ...}}`; returns the nodes and the terminating
/// keyword action (`end`, `else`, `else if X`) if any.
fn parse_nodes(
    tokens: &[Token],
    pos: &mut usize,
) -> Result<(Vec<Node>, Option<String>), TemplateError> {
    let mut nodes = Vec::new();
    while *pos < tokens.len() {
        let token = &tokens[*pos];
        *pos += 1;
        match token {
            Token::Text(t) => nodes.push(Node::Text(t.clone())),
            Token::Action(a) => {
                if a.starts_with("/*") {
                    continue;
                }
                if a == "end" || a == "else" || a.starts_with("else ") {
                    return Ok((nodes, Some(a.clone())));
                }
                let (keyword, rest) = a
                    .split_once(char::is_whitespace)
                    .unwrap_or((a.as_str(), ""));
                match keyword {
                    "if" | "range" | "with" => {
                        nodes.push(parse_block(keyword, rest, tokens, pos)?);
                    }
                    _ => nodes.push(Node::Output(parse_pipeline(a)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_block(
    keyword: &str,
    rest: &str,
    tokens: &[Token],
    pos: &mut usize,
) -> Result<Node, TemplateError> {
    let pipeline = parse_pipeline(rest)?;
    let (body, end) = parse_nodes(tokens, pos)?;
    let otherwise = match end.as_deref() {
        Some("end") => Vec::new(),
        Some("else") => {
            let (nodes, end) = parse_nodes(tokens, pos)?;
            if end.as_deref() != Some("end") {
                return err(format!("missing {{{{end}}}} for {{{{{keyword}}}}}"));
            }
            nodes
        }
        Some(e) if e.starts_with("else if ") && keyword == "if" => {
            // `else if X` is an `if` nested in the else branch that shares our `end`.
            vec![parse_block("if", &e["else if ".len()..], tokens, pos)?]
        }
        _ => return err(format!("missing {{{{end}}}} for {{{{{keyword}}}}}")),
    };
    Ok(match keyword {
        "if" => Node::If {
            cond: pipeline,
            then: body,
            otherwise,
        },
        "range" => Node::Range {
            over: pipeline,
            body,
            otherwise,
        },
        _ => Node::With {
            value: pipeline,
            body,
            otherwise,
        },
    })
}

fn parse_pipeline(text: &str) -> Result<Pipeline, TemplateError> {
    let words = split_words(text)?;
    if words.is_empty() {
        return err("empty pipeline");
    }
    let mut pipeline = Vec::new();
    let mut current = Vec::new();
    for word in words {
        if word == "|" {
            if current.is_empty() {
                return err(format!("missing command before '|' in {text:?}"));
            }
            pipeline.push(Command {
                words: std::mem::take(&mut current),
            });
        } else {
            current.push(parse_operand(&word)?);
        }
    }
    if current.is_empty() {
        return err(format!("missing command after '|' in {text:?}"));
    }
    pipeline.push(Command { words: current });
    Ok(pipeline)
}

fn split_words(text: &str) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        match c {
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return err(format!("unterminated string in {text:?}"));
                }
                i += 1;
            }
            '`' => {
                i += 1;
                while i < chars.len() && chars[i] != '`' {
                    i += 1;
                }
                if i >= chars.len() {
                    return err(format!("unterminated raw string in {text:?}"));
                }
                i += 1;
            }
            '(' => {
                let mut depth = 0;
                while i < chars.len() {
                    match chars[i] {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return err(format!("unclosed '(' in {text:?}"));
                }
                i += 1;
            }
            '|' => i += 1,
            _ => {
                while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '|' {
                    i += 1;
                }
            }
        }
        words.push(chars[start..i].iter().collect());
    }
    Ok(words)
}

fn parse_operand(word: &str) -> Result<Operand, TemplateError> {
    let first = word.chars().next().unwrap_or(' ');
    Ok(match first {
        '"' => Operand::Literal(Value::String(unquote(word)?)),
        '`' => Operand::Literal(Value::String(word[1..word.len() - 1].to_owned())),
        '(' => Operand::Sub(parse_pipeline(&word[1..word.len() - 1])?),
        '.' => Operand::Field {
            path: field_path(&word[1..]),
            from_root: false,
        },
        '$' => Operand::Field {
            path: field_path(word[1..].strip_prefix('.').unwrap_or(&word[1..])),
            from_root: true,
        },
        _ if word == "true" || word == "false" => Operand::Literal(Value::Bool(word == "true")),
        _ if word == "nil" => Operand::Literal(Value::Null),
        c if c.is_ascii_digit() || c == '-' => {
            let number: serde_json::Number = word
                .parse()
                .map_err(|_| TemplateError(format!("bad number {word:?}")))?;
            Operand::Literal(Value::Number(number))
        }
        _ => {
            if !FUNCTIONS.contains(&word) {
                return err(format!("function {word:?} not defined"));
            }
            Operand::Function(word.to_owned())
        }
    })
}

const FUNCTIONS: [&str; 12] = [
    "join",
    "joinAndTruncate",
    "eq",
    "ne",
    "not",
    "and",
    "or",
    "len",
    "index",
    "print",
    "printf",
    "println",
];

fn field_path(path: &str) -> Vec<String> {
    path.split('.')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn unquote(word: &str) -> Result<String, TemplateError> {
    serde_json::from_str(word).map_err(|_| TemplateError(format!("bad string literal {word}")))
}

fn exec_nodes(
    nodes: &[Node],
    dot: &Value,
    cx: &Cx<'_>,
    out: &mut String,
) -> Result<(), TemplateError> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Output(p) => out.push_str(&to_text(&eval_pipeline(p, dot, cx)?)),
            Node::If {
                cond,
                then,
                otherwise,
            } => {
                let branch = if truthy(&eval_pipeline(cond, dot, cx)?) {
                    then
                } else {
                    otherwise
                };
                exec_nodes(branch, dot, cx, out)?;
            }
            Node::With {
                value,
                body,
                otherwise,
            } => {
                let v = eval_pipeline(value, dot, cx)?;
                if truthy(&v) {
                    exec_nodes(body, &v, cx, out)?;
                } else {
                    exec_nodes(otherwise, dot, cx, out)?;
                }
            }
            Node::Range {
                over,
                body,
                otherwise,
            } => {
                let v = eval_pipeline(over, dot, cx)?;
                let items: Vec<Value> = match v {
                    Value::Array(items) => items,
                    Value::Object(map) => {
                        let mut entries: Vec<_> = map.into_iter().collect();
                        entries.sort_by(|a, b| a.0.cmp(&b.0));
                        entries.into_iter().map(|(_, v)| v).collect()
                    }
                    Value::Null => Vec::new(),
                    other => return err(format!("range can't iterate over {}", to_text(&other))),
                };
                if items.is_empty() {
                    exec_nodes(otherwise, dot, cx, out)?;
                }
                for item in &items {
                    exec_nodes(body, item, cx, out)?;
                }
            }
        }
    }
    Ok(())
}

fn eval_pipeline(pipeline: &Pipeline, dot: &Value, cx: &Cx<'_>) -> Result<Value, TemplateError> {
    let mut previous: Option<Value> = None;
    for command in pipeline {
        previous = Some(eval_command(command, previous.take(), dot, cx)?);
    }
    Ok(previous.unwrap_or(Value::Null))
}

fn eval_command(
    command: &Command,
    piped: Option<Value>,
    dot: &Value,
    cx: &Cx<'_>,
) -> Result<Value, TemplateError> {
    let (first, rest) = command
        .words
        .split_first()
        .ok_or_else(|| TemplateError("empty command".into()))?;
    if let Operand::Function(name) = first {
        let mut args = rest
            .iter()
            .map(|o| eval_operand(o, dot, cx))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(p) = piped {
            args.push(p);
        }
        return call(name, &args);
    }
    if !rest.is_empty() || piped.is_some() {
        return err("can't give arguments to a non-function");
    }
    eval_operand(first, dot, cx)
}

fn eval_operand(operand: &Operand, dot: &Value, cx: &Cx<'_>) -> Result<Value, TemplateError> {
    Ok(match operand {
        Operand::Literal(v) => v.clone(),
        Operand::Sub(p) => eval_pipeline(p, dot, cx)?,
        Operand::Function(name) => call(name, &[])?,
        Operand::Field { path, from_root } => {
            let mut current = if *from_root { cx.root } else { dot };
            // A field chain that starts at a resource can be checked against its type.
            let resource = is_resource(current).then_some(current);
            let mut keys: Vec<String> = Vec::new();
            for segment in path {
                match lookup_key(current, segment) {
                    Some((key, v)) => {
                        if let Some(key) = key {
                            keys.push(key);
                        }
                        current = v;
                    }
                    None => {
                        if let (Some(check), Some(resource)) = (cx.check, resource)
                            && check(resource, &keys, segment) == Some(false)
                        {
                            let kind = resource["kind"].as_str().unwrap_or("resource");
                            return err(format!(
                                "can't evaluate field {segment} in type {kind}{}",
                                keys.iter().map(|k| format!(".{k}")).collect::<String>()
                            ));
                        }
                        // Go prints an omitted (zero-valued) field as nothing here.
                        return Ok(Value::Null);
                    }
                }
            }
            current.clone()
        }
    })
}

/// A Go struct field name resolved against JSON keys: the key it names (None for the
/// embedded `TypeMeta`, which is the object itself) and the value there.
fn lookup_key<'a>(value: &'a Value, field: &str) -> Option<(Option<String>, &'a Value)> {
    let map = value.as_object()?;
    if let Some(v) = map.get(field) {
        return Some((Some(field.to_owned()), v));
    }
    let wanted = match field {
        "ObjectMeta" => "metadata",
        "TypeMeta" => return Some((None, value)),
        other => other,
    };
    map.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(wanted))
        .map(|(k, v)| (Some(k.clone()), v))
}

/// Whether `value` is a whole resource (the start of a typed field chain).
fn is_resource(value: &Value) -> bool {
    value.get("apiVersion").is_some() && value.get("kind").is_some()
}

fn call(name: &str, args: &[Value]) -> Result<Value, TemplateError> {
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            err(format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ))
        }
    };
    Ok(match name {
        "join" => {
            arity(2)?;
            Value::String(join_values(&args[0], &text_arg(&args[1]), 0))
        }
        "joinAndTruncate" => {
            arity(3)?;
            let max = args[2].as_u64().unwrap_or(0) as usize;
            Value::String(join_values(&args[0], &text_arg(&args[1]), max))
        }
        "eq" => {
            if args.len() < 2 {
                return err("eq needs two arguments");
            }
            Value::Bool(args[1..].iter().any(|a| loosely_equal(&args[0], a)))
        }
        "ne" => {
            arity(2)?;
            Value::Bool(!loosely_equal(&args[0], &args[1]))
        }
        "not" => {
            arity(1)?;
            Value::Bool(!truthy(&args[0]))
        }
        "and" => args
            .iter()
            .find(|a| !truthy(a))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "or" => args
            .iter()
            .find(|a| truthy(a))
            .or(args.last())
            .cloned()
            .unwrap_or(Value::Null),
        "len" => {
            arity(1)?;
            let n = match &args[0] {
                Value::Array(a) => a.len(),
                Value::Object(m) => m.len(),
                Value::String(s) => s.len(),
                Value::Null => 0,
                other => return err(format!("len of {}", to_text(other))),
            };
            Value::from(n)
        }
        "index" => {
            let (target, keys) = args
                .split_first()
                .ok_or_else(|| TemplateError("index needs arguments".into()))?;
            let mut current = target.clone();
            for key in keys {
                current = match (&current, key) {
                    (Value::Array(a), Value::Number(n)) => a
                        .get(n.as_u64().unwrap_or(u64::MAX) as usize)
                        .cloned()
                        .unwrap_or(Value::Null),
                    (Value::Object(m), Value::String(k)) => {
                        m.get(k).cloned().unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                };
            }
            current
        }
        "print" => Value::String(args.iter().map(to_text).collect::<Vec<_>>().join("")),
        "println" => Value::String(format!(
            "{}\n",
            args.iter().map(to_text).collect::<Vec<_>>().join(" ")
        )),
        "printf" => {
            let (format, rest) = args
                .split_first()
                .ok_or_else(|| TemplateError("printf needs a format".into()))?;
            Value::String(printf(&text_arg(format), rest))
        }
        other => return err(format!("function {other:?} not defined")),
    })
}

fn printf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(_) => out.push_str(
                &args
                    .next()
                    .map(to_text)
                    .unwrap_or_else(|| "%!v(MISSING)".into()),
            ),
            None => out.push('%'),
        }
    }
    out
}

fn text_arg(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => to_text(other),
    }
}

fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // A missing field compares equal to the zero value of the other side, as a Go struct's
        // unset field would.
        (Value::Null, Value::String(s)) | (Value::String(s), Value::Null) => s.is_empty(),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn join_values(items: &Value, separator: &str, max: usize) -> String {
    let parts: Vec<String> = match items {
        Value::Null => return String::new(),
        Value::Array(a) => a.iter().map(to_text).collect(),
        Value::Object(m) => {
            let mut parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", to_text(v)))
                .collect();
            parts.sort();
            parts
        }
        other => vec![to_text(other)],
    };
    let joined = parts.join(separator);
    if max > 3 && joined.len() > max {
        let mut cut = max - 3;
        while !joined.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &joined[..cut])
    } else {
        joined
    }
}

/// Go's truthiness: false, 0, "", nil and empty collections are false.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
    }
}

/// How Go's fmt prints a value (`[a b]` for lists, `map[k:v]` for maps).
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(to_text).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}:{}", to_text(v)))
                .collect();
            parts.sort();
            format!("map[{}]", parts.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(t: &str, data: &Value) -> String {
        Template::parse(t).unwrap().execute(data).unwrap()
    }

    #[test]
    fn go_field_names_resolve_to_json_keys() {
        let pool = json!({"metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/16", "ipipMode": "Always"}});
        assert_eq!(
            run(
                "{{.ObjectMeta.Name}} {{.Spec.CIDR}} {{.Spec.IPIPMode}}",
                &pool
            ),
            "p 10.0.0.0/16 Always"
        );
        assert_eq!(run("{{.metadata.name}}", &pool), "p");
        assert_eq!(
            run(
                "{{if .Spec.VXLANMode}}{{.Spec.VXLANMode}}{{else}}Never{{end}}",
                &pool
            ),
            "Never"
        );
    }

    #[test]
    fn range_join_and_functions() {
        let data = json!([{"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]}]);
        assert_eq!(
            run(
                "{{range .}}{{range .Items}}{{.ObjectMeta.Name}},{{end}}{{end}}",
                &data
            ),
            "a,b,"
        );
        let wep = json!({"spec": {"ipNetworks": ["10.0.0.1/32", "10.0.0.2/32"], "node": ""}});
        assert_eq!(
            run(r#"{{join .Spec.IPNetworks ","}}"#, &wep),
            "10.0.0.1/32,10.0.0.2/32"
        );
        assert_eq!(
            run("{{ if eq .Spec.Node `` }}(global){{ end }}", &wep),
            "(global)"
        );
        assert_eq!(
            run("{{ if eq .Spec.Missing `` }}zero{{ end }}", &wep),
            "zero"
        );
        assert_eq!(
            run(r#"{{printf "%s-%v" "a" 3}} {{len .Spec.IPNetworks}}"#, &wep),
            "a-3 2"
        );
        assert_eq!(run("{{- \"x\" -}}  \n  {{\"y\"}}", &wep), "xy");
        assert_eq!(
            run(
                "{{if .a}}1{{else if .b}}2{{else}}3{{end}}",
                &json!({"b": true})
            ),
            "2"
        );
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(Template::parse("{{if .a}}").is_err());
        assert!(Template::parse("{{end}}").is_err());
        assert!(Template::parse("{{nosuchfunc .a}}").is_err());
        assert!(Template::parse("{{.a").is_err());
    }
}
