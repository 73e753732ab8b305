//! OpenBao / Vault Transit policy help: the policy a customer pastes to let the platform use
//! one Transit key, the `bao` commands that bind it to the platform's role, and a checker
//! that reads a pasted policy (HCL or its JSON form) and says which required capability on
//! which path it does not grant, deciding the way the server's ACL does.
//!
//! The ACL rules followed (OpenBao and Vault agree on them): rules for the same path string
//! merge, and `deny` wins over everything; an exact path beats any pattern; otherwise, of
//! the patterns that match (`*` at the end is a string prefix, a `+` segment matches one
//! segment), the one whose first wildcard comes latest wins, then one without a trailing
//! `*`, then fewer `+`, then the longer, then the lexically greater. Only the winning rule
//! counts: a broader rule never adds capabilities to a more specific one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::openbao::{Capability, OpenbaoKeyRef, OpenbaoRole, TransitEndpoint};

/// Largest policy text the checker reads.
pub const MAX_OPENBAO_POLICY_BYTES: usize = 64 * 1024;

/// What was wrong with a pasted policy; the text says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenbaoPolicyError {
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("path {path:?}: {message}")]
    Rule { path: String, message: String },
    #[error("the policy is larger than {MAX_OPENBAO_POLICY_BYTES} bytes")]
    TooLarge,
    #[error("the policy has no path rules")]
    NoRules,
}

/// One `path "…" { … }` block of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathRule {
    /// As written, with its `*` / `+` wildcards.
    pub path: String,
    pub capabilities: BTreeSet<Capability>,
    /// The line the block starts on (1-based; 0 for the JSON form).
    pub line: usize,
    /// `allowed_parameters`: parameter name → allowed values (empty = any value).
    pub allowed_parameters: Option<BTreeMap<String, Vec<String>>>,
    /// `denied_parameters`: parameter name → denied values (empty = every value).
    pub denied_parameters: Option<BTreeMap<String, Vec<String>>>,
    pub required_parameters: Vec<String>,
    /// `min_wrapping_ttl` is set: every request must ask for a wrapped response, which
    /// keyplane never does.
    pub requires_wrapping: bool,
}

/// A parsed policy document: its path rules in order, and attributes the checker ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenbaoPolicy {
    pub rules: Vec<PathRule>,
    /// Attribute names the checker does not interpret (they do not change capabilities).
    pub ignored: Vec<String>,
}

/// One capability the platform needs on one path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitRequirement {
    pub endpoint: TransitEndpoint,
    /// Relative to the key's namespace, as a policy in that namespace names it.
    pub path: String,
    pub capability: Capability,
    pub purpose: &'static str,
}

/// Every capability the platform needs on `key`, in the order the policy lists them.
pub fn transit_requirements(key: &OpenbaoKeyRef) -> Vec<TransitRequirement> {
    TransitEndpoint::ALL
        .iter()
        .map(|&endpoint| TransitRequirement {
            endpoint,
            path: key.path(endpoint),
            capability: endpoint.capability(),
            purpose: endpoint.purpose(),
        })
        .collect()
}

/// A policy name for `key`: `keyplane-<mount>-<name>`, slashes turned into dashes.
pub fn suggested_policy_name(key: &OpenbaoKeyRef) -> String {
    format!("keyplane-{}-{}", key.mount().replace('/', "-"), key.name())
}

/// The policy to paste: one block per required path, each with a comment saying why.
pub fn recommended_policy_hcl(key: &OpenbaoKeyRef) -> String {
    let mut out = format!(
        "# keyplane: use of Transit key {:?} on mount {:?}{}\n",
        key.name(),
        key.mount(),
        key.namespace()
            .map(|ns| format!(" in namespace {ns:?}"))
            .unwrap_or_default()
    );
    for r in transit_requirements(key) {
        out.push_str(&format!(
            "\n# {}\npath \"{}\" {{\n  capabilities = [\"{}\"]\n}}\n",
            r.purpose, r.path, r.capability
        ));
    }
    out
}

/// One `bao` command line: the arguments after `bao`, and what to feed it on stdin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BaoCommand {
    pub args: Vec<String>,
    /// Given as a here-document when the command is shown as shell.
    pub stdin: Option<String>,
    /// What the command does, for the customer.
    pub purpose: &'static str,
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl fmt::Display for BaoCommand {
    /// As a shell line to copy (`bao …`, with `<<'EOF'` … `EOF` for stdin).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bao")?;
        for a in &self.args {
            write!(f, " {}", shell_quote(a))?;
        }
        if let Some(input) = &self.stdin {
            write!(f, " <<'EOF'\n{input}")?;
            if !input.ends_with('\n') {
                f.write_str("\n")?;
            }
            f.write_str("EOF")?;
        }
        Ok(())
    }
}

/// What `GET …/policy` gives a customer with an OpenBao key: who the platform logs in as,
/// the policy, and the commands that bind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenbaoPolicyHelp {
    /// The role's path (`auth/<mount>/role/<name>`): the identity the policy is bound to.
    pub provider_id: String,
    pub policy_name: String,
    pub policy_hcl: String,
    pub requirements: Vec<TransitRequirement>,
    /// In order: write the policy, create or update the role with it, read the role ID,
    /// create a secret ID. The last two print what the customer gives keyplane.
    pub commands: Vec<BaoCommand>,
}

/// The token lifetime the role is created with: the platform renews its token before half of
/// it has passed, and logs in again at the maximum.
pub const ROLE_TOKEN_TTL: &str = "1h";
pub const ROLE_TOKEN_MAX_TTL: &str = "24h";

/// What a customer's JWT auth mount and role must trust for keyplane's logins: the
/// platform's public key and issuer, and the organization the role is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtTrust {
    pub issuer: String,
    /// The organization: the JWT's `sub`, the role's `bound_subject`.
    pub subject: String,
    pub public_key_pem: String,
}

/// The policy help for `key`, bound to `role`.
pub fn openbao_policy_help(key: &OpenbaoKeyRef, role: &OpenbaoRole) -> OpenbaoPolicyHelp {
    policy_help(key, role, None)
}

/// The policy help for `key` with a JWT auth role trusting `trust` (an AppRole role gets
/// [`openbao_policy_help`]'s).
pub fn openbao_jwt_policy_help(
    key: &OpenbaoKeyRef,
    role: &OpenbaoRole,
    trust: &JwtTrust,
) -> OpenbaoPolicyHelp {
    policy_help(key, role, Some(trust))
}

fn policy_help(
    key: &OpenbaoKeyRef,
    role: &OpenbaoRole,
    trust: Option<&JwtTrust>,
) -> OpenbaoPolicyHelp {
    let policy_name = suggested_policy_name(key);
    let policy_hcl = recommended_policy_hcl(key);
    let ns: Vec<String> = key
        .namespace()
        .map(|ns| vec![format!("-namespace={ns}")])
        .unwrap_or_default();
    let cmd = |verb: &[&str], flags: &[&str], rest: Vec<String>| -> Vec<String> {
        verb.iter()
            .map(|s| s.to_string())
            .chain(ns.iter().cloned())
            .chain(flags.iter().map(|s| s.to_string()))
            .chain(rest)
            .collect()
    };
    let role_path = role.provider_id();
    let write_policy = BaoCommand {
        args: cmd(
            &["policy", "write"],
            &[],
            vec![policy_name.clone(), "-".into()],
        ),
        stdin: Some(policy_hcl.clone()),
        purpose: "store keyplane's policy",
    };
    let commands = match role {
        OpenbaoRole::AppRole { .. } => vec![
            write_policy.clone(),
            BaoCommand {
                args: cmd(
                    &["write"],
                    &[],
                    vec![
                        role_path.clone(),
                        format!("token_policies={policy_name}"),
                        format!("token_ttl={ROLE_TOKEN_TTL}"),
                        format!("token_max_ttl={ROLE_TOKEN_MAX_TTL}"),
                        "token_type=service".into(),
                    ],
                ),
                stdin: None,
                purpose: "create (or update) the platform's AppRole role with that policy; \
                          if the role serves several keys, list every keyplane policy in token_policies",
            },
            BaoCommand {
                args: cmd(
                    &["read"],
                    &["-field=role_id"],
                    vec![format!("{role_path}/role-id")],
                ),
                stdin: None,
                purpose: "print the role ID to give keyplane",
            },
            BaoCommand {
                args: cmd(
                    &["write"],
                    &["-f", "-field=secret_id"],
                    vec![format!("{role_path}/secret-id")],
                ),
                stdin: None,
                purpose: "create a secret ID to give keyplane (it is shown once)",
            },
        ],
        OpenbaoRole::Jwt { mount, .. } => {
            let placeholder = JwtTrust {
                issuer: "<keyplane's issuer>".into(),
                subject: "<your organization ID>".into(),
                public_key_pem: "<keyplane's public key>".into(),
            };
            let t = trust.unwrap_or(&placeholder);
            vec![
                write_policy.clone(),
                BaoCommand {
                    args: cmd(
                        &["write"],
                        &[],
                        vec![
                            format!("auth/{mount}/config"),
                            format!("jwt_validation_pubkeys={}", t.public_key_pem.trim_end()),
                            format!("bound_issuer={}", t.issuer),
                        ],
                    ),
                    stdin: None,
                    purpose: "let the JWT auth mount trust keyplane's signing key (once per mount)",
                },
                BaoCommand {
                    args: cmd(
                        &["write"],
                        &[],
                        vec![
                            role_path.clone(),
                            "role_type=jwt".into(),
                            "user_claim=sub".into(),
                            format!("bound_subject={}", t.subject),
                            format!("bound_audiences={}", key.address()),
                            format!("token_policies={policy_name}"),
                            format!("token_ttl={ROLE_TOKEN_TTL}"),
                            format!("token_max_ttl={ROLE_TOKEN_MAX_TTL}"),
                            "token_type=service".into(),
                        ],
                    ),
                    stdin: None,
                    purpose: "create (or update) the platform's JWT role, bound to your organization and this \
                              server, with that policy; nothing secret is given to keyplane",
                },
            ]
        }
    };
    OpenbaoPolicyHelp {
        provider_id: role_path,
        policy_name,
        policy_hcl,
        requirements: transit_requirements(key),
        commands,
    }
}

// ---------------------------------------------------------------------------------------
// Parsing: the HCL subset policies use, and the JSON form.

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Str(String),
    Num(String),
    Bool(bool),
    List(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    fn describe(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Num(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::List(_) => "a list",
            Value::Object(_) => "an object",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Eq,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Colon,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
    /// Where the last token read starts (its end is `pos`), for edits that keep the rest.
    tok_start: usize,
}

impl<'a> Lexer<'a> {
    fn err(&self, message: impl Into<String>) -> OpenbaoPolicyError {
        OpenbaoPolicyError::Syntax {
            line: self.line,
            column: self.col,
            message: message.into(),
        }
    }

    fn bump(&mut self) -> Option<u8> {
        let b = *self.src.get(self.pos)?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else if b & 0xC0 != 0x80 {
            self.col += 1;
        }
        Some(b)
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_trivia(&mut self) -> Result<(), OpenbaoPolicyError> {
        loop {
            match (self.peek(), self.src.get(self.pos + 1).copied()) {
                (Some(b), _) if b.is_ascii_whitespace() => {
                    self.bump();
                }
                (Some(b'#'), _) | (Some(b'/'), Some(b'/')) => {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.bump();
                    }
                }
                (Some(b'/'), Some(b'*')) => {
                    self.bump();
                    self.bump();
                    loop {
                        match self.bump() {
                            None => return Err(self.err("a /* comment is never closed")),
                            Some(b'*') if self.peek() == Some(b'/') => {
                                self.bump();
                                break;
                            }
                            Some(_) => {}
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// The next token with the line and column it starts at.
    fn next(&mut self) -> Result<Option<(Tok, usize, usize)>, OpenbaoPolicyError> {
        self.skip_trivia()?;
        let (line, col) = (self.line, self.col);
        self.tok_start = self.pos;
        let Some(b) = self.peek() else {
            return Ok(None);
        };
        let tok = match b {
            b'=' => {
                self.bump();
                Tok::Eq
            }
            b'{' => {
                self.bump();
                Tok::LBrace
            }
            b'}' => {
                self.bump();
                Tok::RBrace
            }
            b'[' => {
                self.bump();
                Tok::LBracket
            }
            b']' => {
                self.bump();
                Tok::RBracket
            }
            b',' => {
                self.bump();
                Tok::Comma
            }
            b':' => {
                self.bump();
                Tok::Colon
            }
            b'"' => {
                self.bump();
                let mut out = Vec::new();
                loop {
                    match self.bump() {
                        None | Some(b'\n') => return Err(self.err("a string is never closed")),
                        Some(b'"') => break,
                        Some(b'\\') => match self.bump() {
                            Some(b'"') => out.push(b'"'),
                            Some(b'\\') => out.push(b'\\'),
                            Some(b'n') => out.push(b'\n'),
                            Some(b't') => out.push(b'\t'),
                            Some(b'r') => out.push(b'\r'),
                            Some(b'/') => out.push(b'/'),
                            _ => return Err(self.err("unknown escape in a string")),
                        },
                        Some(other) => out.push(other),
                    }
                }
                Tok::Str(String::from_utf8(out).map_err(|_| self.err("a string is not UTF-8"))?)
            }
            b'<' => return Err(self.err("here-documents are not supported in policies here")),
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    self.bump();
                }
                Tok::Ident(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
            }
            b if b.is_ascii_digit() || b == b'-' => {
                let start = self.pos;
                self.bump();
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.')
                {
                    self.bump();
                }
                Tok::Num(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
            }
            other => {
                return Err(self.err(format!("unexpected character {:?}", char::from(other))));
            }
        };
        Ok(Some((tok, line, col)))
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<(Tok, usize, usize)>,
    /// The byte range of the peeked token.
    peeked_span: (usize, usize),
    /// The byte range of the last token `next` returned.
    last_span: (usize, usize),
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Parser<'a> {
        Parser {
            lexer: Lexer {
                src: text.as_bytes(),
                pos: 0,
                line: 1,
                col: 1,
                tok_start: 0,
            },
            peeked: None,
            peeked_span: (0, 0),
            last_span: (0, 0),
        }
    }

    fn peek(&mut self) -> Result<Option<&Tok>, OpenbaoPolicyError> {
        if self.peeked.is_none() {
            self.peeked = self.lexer.next()?;
            self.peeked_span = (self.lexer.tok_start, self.lexer.pos);
        }
        Ok(self.peeked.as_ref().map(|(t, _, _)| t))
    }

    fn next(&mut self) -> Result<Option<(Tok, usize, usize)>, OpenbaoPolicyError> {
        match self.peeked.take() {
            Some(t) => {
                self.last_span = self.peeked_span;
                Ok(Some(t))
            }
            None => {
                let t = self.lexer.next()?;
                self.last_span = (self.lexer.tok_start, self.lexer.pos);
                Ok(t)
            }
        }
    }

    fn err_at(line: usize, column: usize, message: impl Into<String>) -> OpenbaoPolicyError {
        OpenbaoPolicyError::Syntax {
            line,
            column,
            message: message.into(),
        }
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), OpenbaoPolicyError> {
        match self.next()? {
            Some((t, _, _)) if t == want => Ok(()),
            Some((t, l, c)) => Err(Self::err_at(l, c, format!("expected {what}, found {t:?}"))),
            None => Err(self.lexer.err(format!("expected {what}, found the end"))),
        }
    }

    /// A value after `=`: string, number, boolean, list or object.
    fn value(&mut self) -> Result<Value, OpenbaoPolicyError> {
        match self.next()? {
            Some((Tok::Str(s), _, _)) => Ok(Value::Str(s)),
            Some((Tok::Num(n), _, _)) => Ok(Value::Num(n)),
            Some((Tok::Ident(i), _, _)) if i == "true" => Ok(Value::Bool(true)),
            Some((Tok::Ident(i), _, _)) if i == "false" => Ok(Value::Bool(false)),
            Some((Tok::LBracket, _, _)) => {
                let mut items = Vec::new();
                loop {
                    if self.peek()? == Some(&Tok::RBracket) {
                        self.next()?;
                        return Ok(Value::List(items));
                    }
                    items.push(self.value()?);
                    match self.next()? {
                        Some((Tok::Comma, _, _)) => {}
                        Some((Tok::RBracket, _, _)) => return Ok(Value::List(items)),
                        Some((t, l, c)) => {
                            return Err(Self::err_at(
                                l,
                                c,
                                format!("expected , or ] in a list, found {t:?}"),
                            ));
                        }
                        None => return Err(self.lexer.err("a list is never closed")),
                    }
                }
            }
            Some((Tok::LBrace, _, _)) => self.object(),
            Some((t, l, c)) => Err(Self::err_at(l, c, format!("expected a value, found {t:?}"))),
            None => Err(self.lexer.err("expected a value, found the end")),
        }
    }

    /// Attributes (`key = value`) and blocks (`key "label" {…}` or `key {…}`) until `}` (or
    /// the end of the input, for the top level, when `closing` is false), each with the line
    /// it starts on.
    fn body(&mut self, closing: bool) -> Result<Vec<(String, Value, usize)>, OpenbaoPolicyError> {
        let mut out = Vec::new();
        loop {
            let (key, l, c) = match self.next()? {
                None if !closing => return Ok(out),
                None => return Err(self.lexer.err("a { block is never closed")),
                Some((Tok::RBrace, _, _)) if closing => return Ok(out),
                Some((Tok::Comma, _, _)) if closing => continue,
                Some((Tok::Ident(k), l, c)) | Some((Tok::Str(k), l, c)) => (k, l, c),
                Some((t, l, c)) => {
                    return Err(Self::err_at(l, c, format!("expected a name, found {t:?}")));
                }
            };
            match self.peek()? {
                Some(Tok::Eq) | Some(Tok::Colon) => {
                    self.next()?;
                    let v = self.value()?;
                    out.push((key, v, l));
                }
                Some(Tok::Str(_)) => {
                    // A labelled block: `path "label" { … }` (one label is all policies use).
                    let Some((Tok::Str(label), _, _)) = self.next()? else {
                        return Err(Self::err_at(l, c, "expected a block label"));
                    };
                    self.expect(Tok::LBrace, "{ after the block label")?;
                    let inner = self.object()?;
                    out.push((key, Value::Object(vec![(label, inner)]), l));
                }
                Some(Tok::LBrace) => {
                    self.next()?;
                    out.push((key, self.object()?, l));
                }
                _ => {
                    return Err(Self::err_at(
                        l,
                        c,
                        format!("expected = or a block after {key:?}"),
                    ));
                }
            }
        }
    }

    /// The rest of a `{ … }` after its opening brace.
    fn object(&mut self) -> Result<Value, OpenbaoPolicyError> {
        Ok(Value::Object(
            self.body(true)?
                .into_iter()
                .map(|(k, v, _)| (k, v))
                .collect(),
        ))
    }
}

/// Where one `path "…" { … }` block of an HCL policy stands in its text, so keyplane's policy
/// merge can complete a block by inserting text and leave every other byte as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HclPathBlock {
    pub(crate) path: String,
    /// The byte offset of the block's closing `}`.
    pub(crate) close: usize,
    /// The block's first `capabilities` attribute, when it has one.
    pub(crate) capabilities: Option<HclCapabilities>,
}

/// A `capabilities` attribute's value, as far as an insertion needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HclCapabilities {
    /// A list: new items go at `insert_at`, written as `prefix` + items + `suffix` so the
    /// list keeps its separators (none when empty, a trailing comma when it had one).
    List {
        insert_at: usize,
        prefix: &'static str,
        suffix: &'static str,
    },
    /// Not a list (a lone string); keyplane does not rewrite it.
    Other,
}

/// The labelled `path "…" { … }` blocks of an HCL policy, in order, read by the same lexer and
/// parser as [`OpenbaoPolicy::parse`]. A path rule in another form (`path = { … }`) is parsed
/// there but not listed here.
pub(crate) fn hcl_path_blocks(text: &str) -> Result<Vec<HclPathBlock>, OpenbaoPolicyError> {
    if text.len() > MAX_OPENBAO_POLICY_BYTES {
        return Err(OpenbaoPolicyError::TooLarge);
    }
    let mut p = Parser::new(text);
    let mut out = Vec::new();
    loop {
        let (key, l, c) = match p.next()? {
            None => return Ok(out),
            Some((Tok::Ident(k), l, c)) | Some((Tok::Str(k), l, c)) => (k, l, c),
            Some((t, l, c)) => {
                return Err(Parser::err_at(
                    l,
                    c,
                    format!("expected a name, found {t:?}"),
                ));
            }
        };
        match p.peek()? {
            Some(Tok::Eq) | Some(Tok::Colon) => {
                p.next()?;
                p.value()?;
            }
            Some(Tok::Str(_)) => {
                let Some((Tok::Str(label), _, _)) = p.next()? else {
                    return Err(Parser::err_at(l, c, "expected a block label"));
                };
                p.expect(Tok::LBrace, "{ after the block label")?;
                if key == "path" {
                    out.push(p.path_block(label)?);
                } else {
                    p.object()?;
                }
            }
            Some(Tok::LBrace) => {
                p.next()?;
                p.object()?;
            }
            _ => {
                return Err(Parser::err_at(
                    l,
                    c,
                    format!("expected = or a block after {key:?}"),
                ));
            }
        }
    }
}

impl Parser<'_> {
    /// The rest of a `path "…" {` block, with where its closing brace and capabilities stand.
    fn path_block(&mut self, path: String) -> Result<HclPathBlock, OpenbaoPolicyError> {
        let mut capabilities = None;
        loop {
            let (key, l, c) = match self.next()? {
                None => return Err(self.lexer.err("a { block is never closed")),
                Some((Tok::RBrace, _, _)) => {
                    return Ok(HclPathBlock {
                        path,
                        close: self.last_span.0,
                        capabilities,
                    });
                }
                Some((Tok::Comma, _, _)) => continue,
                Some((Tok::Ident(k), l, c)) | Some((Tok::Str(k), l, c)) => (k, l, c),
                Some((t, l, c)) => {
                    return Err(Self::err_at(l, c, format!("expected a name, found {t:?}")));
                }
            };
            match self.peek()? {
                Some(Tok::Eq) | Some(Tok::Colon) => {
                    self.next()?;
                    if key == "capabilities" && capabilities.is_none() {
                        capabilities = Some(self.capabilities_value()?);
                    } else {
                        self.value()?;
                    }
                }
                Some(Tok::Str(_)) => {
                    self.next()?;
                    self.expect(Tok::LBrace, "{ after the block label")?;
                    self.object()?;
                }
                Some(Tok::LBrace) => {
                    self.next()?;
                    self.object()?;
                }
                _ => {
                    return Err(Self::err_at(
                        l,
                        c,
                        format!("expected = or a block after {key:?}"),
                    ));
                }
            }
        }
    }

    /// A `capabilities` value after its `=`: where an item can be added to it.
    fn capabilities_value(&mut self) -> Result<HclCapabilities, OpenbaoPolicyError> {
        if self.peek()? != Some(&Tok::LBracket) {
            self.value()?;
            return Ok(HclCapabilities::Other);
        }
        self.next()?;
        let (mut insert_at, mut prefix, mut suffix) = (self.last_span.1, "", "");
        loop {
            if self.peek()? == Some(&Tok::RBracket) {
                self.next()?;
                break;
            }
            self.value()?;
            (insert_at, prefix, suffix) = (self.last_span.1, ", ", "");
            match self.next()? {
                Some((Tok::Comma, _, _)) => {
                    (insert_at, prefix, suffix) = (self.last_span.1, " ", ",")
                }
                Some((Tok::RBracket, _, _)) => break,
                Some((t, l, c)) => {
                    return Err(Self::err_at(
                        l,
                        c,
                        format!("expected , or ] in a list, found {t:?}"),
                    ));
                }
                None => return Err(self.lexer.err("a list is never closed")),
            }
        }
        Ok(HclCapabilities::List {
            insert_at,
            prefix,
            suffix,
        })
    }
}

fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::String(s) => Value::Str(s.clone()),
        serde_json::Value::Number(n) => Value::Num(n.to_string()),
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Null => Value::List(vec![]),
        serde_json::Value::Array(a) => Value::List(a.iter().map(json_to_value).collect()),
        serde_json::Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_value(v)))
                .collect(),
        ),
    }
}

fn rule_err(path: &str, message: impl Into<String>) -> OpenbaoPolicyError {
    OpenbaoPolicyError::Rule {
        path: path.to_string(),
        message: message.into(),
    }
}

fn strings(path: &str, what: &str, v: &Value) -> Result<Vec<String>, OpenbaoPolicyError> {
    let items = match v {
        Value::List(items) => items,
        Value::Str(s) => return Ok(vec![s.clone()]),
        other => {
            return Err(rule_err(
                path,
                format!("{what} must be a list of strings, not {}", other.describe()),
            ));
        }
    };
    items
        .iter()
        .map(|i| match i {
            Value::Str(s) => Ok(s.clone()),
            Value::Num(n) => Ok(n.clone()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(rule_err(
                path,
                format!("{what} must hold strings, not {}", other.describe()),
            )),
        })
        .collect()
}

fn parameter_map(
    path: &str,
    what: &str,
    v: &Value,
) -> Result<BTreeMap<String, Vec<String>>, OpenbaoPolicyError> {
    // HCL may give a map as one object or as a list of objects.
    let objects: Vec<&Vec<(String, Value)>> = match v {
        Value::Object(o) => vec![o],
        Value::List(items) => items
            .iter()
            .map(|i| match i {
                Value::Object(o) => Ok(o),
                other => Err(rule_err(
                    path,
                    format!("{what} must be a map, not {}", other.describe()),
                )),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(rule_err(
                path,
                format!("{what} must be a map, not {}", other.describe()),
            ));
        }
    };
    let mut out = BTreeMap::new();
    for o in objects {
        for (k, v) in o {
            out.insert(k.clone(), strings(path, what, v)?);
        }
    }
    Ok(out)
}

/// The capabilities an old-style `policy = "…"` stands for.
fn legacy_policy(path: &str, name: &str) -> Result<Vec<Capability>, OpenbaoPolicyError> {
    use Capability::*;
    Ok(match name {
        "deny" => vec![Deny],
        "read" => vec![Read, List],
        "write" => vec![Read, List, Create, Update, Delete],
        "sudo" => vec![Read, List, Create, Update, Delete, Sudo],
        other => {
            return Err(rule_err(
                path,
                format!("policy = {other:?} is not one of deny, read, write, sudo"),
            ));
        }
    })
}

fn rule_from(
    path: String,
    line: usize,
    attrs: &[(String, Value)],
    ignored: &mut Vec<String>,
) -> Result<PathRule, OpenbaoPolicyError> {
    if path.contains("+*") {
        return Err(rule_err(
            &path,
            "invalid use of wildcards ('+*' is forbidden)",
        ));
    }
    let mut rule = PathRule {
        path,
        capabilities: BTreeSet::new(),
        line,
        allowed_parameters: None,
        denied_parameters: None,
        required_parameters: Vec::new(),
        requires_wrapping: false,
    };
    for (k, v) in attrs {
        match k.as_str() {
            "capabilities" => {
                for c in strings(&rule.path, "capabilities", v)? {
                    let cap = c
                        .parse::<Capability>()
                        .map_err(|e| rule_err(&rule.path, e.to_string()))?;
                    rule.capabilities.insert(cap);
                }
            }
            "policy" => {
                let Value::Str(name) = v else {
                    return Err(rule_err(&rule.path, "policy must be a string"));
                };
                rule.capabilities.extend(legacy_policy(&rule.path, name)?);
            }
            "allowed_parameters" => {
                rule.allowed_parameters = Some(parameter_map(&rule.path, k, v)?);
            }
            "denied_parameters" => {
                rule.denied_parameters = Some(parameter_map(&rule.path, k, v)?);
            }
            "required_parameters" => {
                rule.required_parameters = strings(&rule.path, k, v)?;
            }
            "min_wrapping_ttl" => rule.requires_wrapping = true,
            other => {
                let note = format!("{other} (path {:?})", rule.path);
                if !ignored.contains(&note) {
                    ignored.push(note);
                }
            }
        }
    }
    if rule.capabilities.contains(&Capability::Deny) {
        rule.capabilities = BTreeSet::from([Capability::Deny]);
    }
    Ok(rule)
}

impl OpenbaoPolicy {
    /// Parses a policy as `bao policy write` takes it: HCL, or its JSON form
    /// (`{"path": {"<path>": {"capabilities": [...]}}}`).
    pub fn parse(text: &str) -> Result<OpenbaoPolicy, OpenbaoPolicyError> {
        if text.len() > MAX_OPENBAO_POLICY_BYTES {
            return Err(OpenbaoPolicyError::TooLarge);
        }
        let top: Vec<(String, Value, usize)> = if text.trim_start().starts_with('{') {
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| OpenbaoPolicyError::Syntax {
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                })?;
            match json_to_value(&json) {
                Value::Object(o) => o.into_iter().map(|(k, v)| (k, v, 0)).collect(),
                _ => {
                    return Err(OpenbaoPolicyError::Syntax {
                        line: 1,
                        column: 1,
                        message: "a JSON policy must be an object".into(),
                    });
                }
            }
        } else {
            Parser::new(text).body(false)?
        };
        let mut rules = Vec::new();
        let mut ignored = Vec::new();
        for (key, value, line) in top {
            match key.as_str() {
                "path" => {
                    let entries: Vec<(String, Value)> = match value {
                        Value::Object(o) => o,
                        Value::List(items) => items
                            .into_iter()
                            .filter_map(|i| match i {
                                Value::Object(o) => Some(o),
                                _ => None,
                            })
                            .flatten()
                            .collect(),
                        other => {
                            return Err(OpenbaoPolicyError::Syntax {
                                line,
                                column: 1,
                                message: format!("path must be a block, not {}", other.describe()),
                            });
                        }
                    };
                    for (path, attrs) in entries {
                        let attrs = match attrs {
                            Value::Object(a) => a,
                            Value::List(items) => items
                                .into_iter()
                                .filter_map(|i| match i {
                                    Value::Object(o) => Some(o),
                                    _ => None,
                                })
                                .flatten()
                                .collect(),
                            other => {
                                return Err(rule_err(
                                    &path,
                                    format!("the rule must be a block, not {}", other.describe()),
                                ));
                            }
                        };
                        rules.push(rule_from(path, line, &attrs, &mut ignored)?);
                    }
                }
                other => ignored.push(other.to_string()),
            }
        }
        if rules.is_empty() {
            return Err(OpenbaoPolicyError::NoRules);
        }
        Ok(OpenbaoPolicy { rules, ignored })
    }

    /// Which rule decides `path`, and the capabilities it gives, as the server decides it
    /// (see the module's documentation). None when no rule matches: everything is refused.
    pub fn governing_rule(&self, path: &str) -> Option<(&str, BTreeSet<Capability>)> {
        Acl::new(std::slice::from_ref(self)).decide(path)
    }
}

// ---------------------------------------------------------------------------------------
// The ACL: rules merged per path string, then the server's choice of the governing rule.

struct MergedRule<'a> {
    path: &'a str,
    caps: BTreeSet<Capability>,
}

struct Acl<'a> {
    exact: BTreeMap<&'a str, MergedRule<'a>>,
    /// Trailing `*`, no `+`: keyed by the prefix (the `*` removed).
    prefix: BTreeMap<&'a str, MergedRule<'a>>,
    /// With a `+` segment: keyed by the whole pattern.
    segment: BTreeMap<&'a str, MergedRule<'a>>,
}

fn has_segment_wildcard(p: &str) -> bool {
    p == "+" || p.contains("/+") || p.starts_with("+/")
}

fn merge(into: &mut BTreeSet<Capability>, caps: &BTreeSet<Capability>) {
    if into.contains(&Capability::Deny) {
        return;
    }
    if caps.contains(&Capability::Deny) {
        *into = BTreeSet::from([Capability::Deny]);
    } else {
        into.extend(caps.iter().copied());
    }
}

struct Candidate<'r, 'a> {
    first_wildcard: usize,
    is_prefix: bool,
    wildcards: usize,
    pattern: &'r str,
    rule: &'r MergedRule<'a>,
}

impl<'a> Acl<'a> {
    fn new(policies: &'a [OpenbaoPolicy]) -> Acl<'a> {
        let mut acl = Acl {
            exact: BTreeMap::new(),
            prefix: BTreeMap::new(),
            segment: BTreeMap::new(),
        };
        for rule in policies.iter().flat_map(|p| &p.rules) {
            let p = rule.path.as_str();
            let (table, key) = if has_segment_wildcard(p) {
                (&mut acl.segment, p)
            } else if let Some(prefix) = p.strip_suffix('*') {
                (&mut acl.prefix, prefix)
            } else {
                (&mut acl.exact, p)
            };
            let entry = table.entry(key).or_insert_with(|| MergedRule {
                path: p,
                caps: BTreeSet::new(),
            });
            merge(&mut entry.caps, &rule.capabilities);
        }
        acl
    }

    fn decide(&self, path: &str) -> Option<(&'a str, BTreeSet<Capability>)> {
        if let Some(r) = self.exact.get(path) {
            return Some((r.path, r.caps.clone()));
        }
        let mut candidates: Vec<Candidate<'_, 'a>> = Vec::new();
        // The longest matching prefix rule.
        if let Some((prefix, rule)) = self
            .prefix
            .iter()
            .filter(|(prefix, _)| path.starts_with(*prefix))
            .max_by_key(|(prefix, _)| prefix.len())
        {
            candidates.push(Candidate {
                first_wildcard: prefix.len(),
                is_prefix: true,
                wildcards: 0,
                pattern: prefix,
                rule,
            });
        }
        let parts: Vec<&str> = path.split('/').collect();
        'patterns: for (full, rule) in &self.segment {
            let first_wildcard = full.find('+').unwrap_or(full.len());
            let (pattern, is_prefix) = match full.strip_suffix('*') {
                Some(p) => (p, true),
                None => (*full, false),
            };
            let segs: Vec<&str> = pattern.split('/').collect();
            if parts.len() < segs.len() || (!is_prefix && parts.len() != segs.len()) {
                continue;
            }
            let mut wildcards = 0;
            for (i, seg) in segs.iter().enumerate() {
                if *seg == "+" {
                    wildcards += 1;
                } else if *seg == parts[i]
                    || (is_prefix && i == segs.len() - 1 && parts[i].starts_with(seg))
                {
                } else {
                    continue 'patterns;
                }
            }
            candidates.push(Candidate {
                first_wildcard,
                is_prefix,
                wildcards,
                pattern,
                rule,
            });
        }
        // Highest priority last, as the server sorts them.
        candidates
            .into_iter()
            .max_by(|a, b| {
                a.first_wildcard
                    .cmp(&b.first_wildcard)
                    .then(b.is_prefix.cmp(&a.is_prefix))
                    .then(b.wildcards.cmp(&a.wildcards))
                    .then(a.pattern.len().cmp(&b.pattern.len()))
                    .then(a.pattern.cmp(b.pattern))
            })
            .map(|c| (c.rule.path, c.rule.caps.clone()))
    }
}

// ---------------------------------------------------------------------------------------
// The checker.

/// How the pasted policy treats one requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum TransitVerdict {
    /// The governing rule grants the capability.
    Granted { rule: String },
    /// No rule matches the path.
    NoRule,
    /// The governing rule lacks the capability (a broader rule that has it does not count).
    Missing {
        rule: String,
        granted: Vec<Capability>,
    },
    /// The governing rule denies the path.
    Denied { rule: String },
    /// The capability is granted, but the rule's parameter or wrapping constraints refuse
    /// the requests keyplane sends.
    Restricted { rule: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitFinding {
    pub requirement: TransitRequirement,
    #[serde(flatten)]
    pub verdict: TransitVerdict,
    /// What to change, for the customer.
    pub message: String,
}

impl TransitFinding {
    pub fn is_granted(&self) -> bool {
        matches!(self.verdict, TransitVerdict::Granted { .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitCheckReport {
    /// Every requirement is granted.
    pub ok: bool,
    /// One per requirement, in the order of [`transit_requirements`].
    pub findings: Vec<TransitFinding>,
    /// Attributes the checker did not interpret.
    pub ignored: Vec<String>,
}

impl TransitCheckReport {
    /// The requirements the policy does not meet.
    pub fn problems(&self) -> impl Iterator<Item = &TransitFinding> {
        self.findings.iter().filter(|f| !f.is_granted())
    }
}

/// Why the rule's parameter constraints refuse keyplane's requests to `endpoint`, if they do.
fn parameter_problem(rule: &PathRule, endpoint: TransitEndpoint) -> Option<String> {
    if rule.requires_wrapping {
        return Some(
            "min_wrapping_ttl requires wrapped responses, which keyplane does not request".into(),
        );
    }
    let sent = endpoint.parameters();
    if let Some(allowed) = &rule.allowed_parameters {
        let any = allowed.get("*").is_some_and(|v| v.is_empty());
        for p in sent {
            match allowed.get(*p) {
                Some(values) if !values.is_empty() => {
                    return Some(format!(
                        "allowed_parameters limits {p:?} to fixed values, but keyplane sends data there"
                    ));
                }
                Some(_) => {}
                None if any => {}
                None => {
                    return Some(format!(
                        "allowed_parameters does not allow {p:?}, which keyplane sends"
                    ));
                }
            }
        }
    }
    if let Some(denied) = &rule.denied_parameters {
        if denied.contains_key("*") {
            return Some("denied_parameters denies every parameter".into());
        }
        for p in sent {
            if denied.contains_key(*p) {
                return Some(format!(
                    "denied_parameters refuses {p:?}, which keyplane sends"
                ));
            }
        }
    }
    for req in &rule.required_parameters {
        if !sent.contains(&req.as_str()) {
            return Some(format!(
                "required_parameters asks for {req:?}, which keyplane does not send"
            ));
        }
    }
    None
}

/// Checks `policies` (every policy the role's tokens carry, merged as the server merges
/// them) against what the platform needs on `key`.
pub fn check_openbao_policies(
    policies: &[OpenbaoPolicy],
    key: &OpenbaoKeyRef,
) -> TransitCheckReport {
    let acl = Acl::new(policies);
    let rules_by_path: BTreeMap<&str, Vec<&PathRule>> = policies
        .iter()
        .flat_map(|p| &p.rules)
        .fold(BTreeMap::new(), |mut m, r| {
            m.entry(r.path.as_str()).or_default().push(r);
            m
        });
    let findings: Vec<TransitFinding> = transit_requirements(key)
        .into_iter()
        .map(|req| {
            let cap = req.capability;
            let (verdict, message) = match acl.decide(&req.path) {
                None => (
                    TransitVerdict::NoRule,
                    format!(
                        "no rule covers {:?}: add path {:?} {{ capabilities = [\"{cap}\"] }}",
                        req.path, req.path
                    ),
                ),
                Some((rule, caps)) if caps.contains(&Capability::Deny) => (
                    TransitVerdict::Denied {
                        rule: rule.to_string(),
                    },
                    format!(
                        "the rule for {rule:?} denies {:?}; remove the deny or add an exact rule path {:?} {{ capabilities = [\"{cap}\"] }}",
                        req.path, req.path
                    ),
                ),
                Some((rule, caps)) if !caps.contains(&cap) => (
                    TransitVerdict::Missing {
                        rule: rule.to_string(),
                        granted: caps.iter().copied().collect(),
                    },
                    format!(
                        "the rule for {rule:?} decides {:?} and grants {:?} but not {cap:?}; add \"{cap}\" to it",
                        req.path,
                        caps.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                    ),
                ),
                Some((rule, _)) => {
                    let problem = rules_by_path
                        .get(rule)
                        .into_iter()
                        .flatten()
                        .find_map(|r| parameter_problem(r, req.endpoint));
                    match problem {
                        Some(reason) => (
                            TransitVerdict::Restricted {
                                rule: rule.to_string(),
                                reason: reason.clone(),
                            },
                            format!("the rule for {rule:?} grants \"{cap}\" on {:?}, but {reason}", req.path),
                        ),
                        None => (
                            TransitVerdict::Granted {
                                rule: rule.to_string(),
                            },
                            format!("\"{cap}\" on {:?} is granted by the rule for {rule:?}", req.path),
                        ),
                    }
                }
            };
            TransitFinding {
                requirement: req,
                verdict,
                message,
            }
        })
        .collect();
    TransitCheckReport {
        ok: findings.iter().all(TransitFinding::is_granted),
        findings,
        ignored: policies.iter().flat_map(|p| p.ignored.clone()).collect(),
    }
}

/// Parses `text` and checks it against `key` (see [`check_openbao_policies`]).
pub fn check_openbao_policy(
    text: &str,
    key: &OpenbaoKeyRef,
) -> Result<TransitCheckReport, OpenbaoPolicyError> {
    Ok(check_openbao_policies(&[OpenbaoPolicy::parse(text)?], key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> OpenbaoKeyRef {
        OpenbaoKeyRef::parse("https://bao.example.com:8200/v1/transit/keys/orders").unwrap()
    }

    fn decide(policy: &str, path: &str) -> Option<(String, Vec<&'static str>)> {
        let p = OpenbaoPolicy::parse(policy).unwrap();
        p.governing_rule(path).map(|(rule, caps)| {
            (
                rule.to_string(),
                caps.into_iter().map(|c| c.as_str()).collect(),
            )
        })
    }

    #[test]
    fn the_recommended_policy_passes_its_own_check() {
        let hcl = recommended_policy_hcl(&key());
        let report = check_openbao_policy(&hcl, &key()).unwrap();
        assert!(report.ok, "{report:#?}");
        assert_eq!(report.findings.len(), TransitEndpoint::ALL.len());
        assert!(
            hcl.contains("path \"transit/encrypt/orders\" {\n  capabilities = [\"update\"]\n}")
        );
        assert!(hcl.contains("path \"transit/keys/orders\" {\n  capabilities = [\"read\"]\n}"));
        assert!(!hcl.contains("rewrap"), "{hcl}");
        // And a policy that gives too much still passes (the checker asks for a minimum).
        let broad =
            r#"path "transit/*" { capabilities = ["create", "read", "update", "delete", "list"] }"#;
        assert!(check_openbao_policy(broad, &key()).unwrap().ok);
    }

    #[test]
    fn a_missing_capability_is_named_with_its_path() {
        let hcl = recommended_policy_hcl(&key()).replace(
            "path \"transit/decrypt/orders\" {\n  capabilities = [\"update\"]",
            "path \"transit/decrypt/orders\" {\n  capabilities = [\"read\"]",
        );
        let report = check_openbao_policy(&hcl, &key()).unwrap();
        assert!(!report.ok);
        let problems: Vec<_> = report.problems().collect();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let f = problems[0];
        assert_eq!(f.requirement.path, "transit/decrypt/orders");
        assert_eq!(f.requirement.capability, Capability::Update);
        assert_eq!(
            f.verdict,
            TransitVerdict::Missing {
                rule: "transit/decrypt/orders".into(),
                granted: vec![Capability::Read]
            }
        );
        assert!(f.message.contains("add \"update\""), "{}", f.message);

        let only_encrypt = r#"path "transit/encrypt/orders" { capabilities = ["update"] }"#;
        let report = check_openbao_policy(only_encrypt, &key()).unwrap();
        let missing: Vec<_> = report
            .problems()
            .map(|f| f.requirement.path.as_str())
            .collect();
        assert_eq!(
            missing,
            [
                "transit/decrypt/orders",
                "transit/datakey/plaintext/orders",
                "transit/datakey/wrapped/orders",
                "transit/keys/orders"
            ]
        );
        assert!(
            report
                .problems()
                .all(|f| f.verdict == TransitVerdict::NoRule)
        );
    }

    #[test]
    fn the_most_specific_rule_wins_and_broader_ones_add_nothing() {
        let p = r#"
            path "transit/*" { capabilities = ["update", "read"] }
            path "transit/decrypt/*" { capabilities = ["read"] }
        "#;
        assert_eq!(
            decide(p, "transit/decrypt/orders"),
            Some(("transit/decrypt/*".into(), vec!["read"]))
        );
        assert_eq!(
            decide(p, "transit/encrypt/orders"),
            Some(("transit/*".into(), vec!["read", "update"]))
        );
        // Exact beats any pattern, even a longer-looking one.
        let p = r#"
            path "transit/encrypt/orders" { capabilities = ["read"] }
            path "transit/encrypt/orders*" { capabilities = ["update"] }
        "#;
        assert_eq!(
            decide(p, "transit/encrypt/orders"),
            Some(("transit/encrypt/orders".into(), vec!["read"]))
        );
        // A glob is a string prefix, not a segment prefix.
        assert_eq!(
            decide(
                r#"path "transit/enc*" { capabilities = ["update"] }"#,
                "transit/encrypt/orders"
            ),
            Some(("transit/enc*".into(), vec!["update"]))
        );
        assert_eq!(
            decide(
                r#"path "transit/decrypt" { capabilities = ["update"] }"#,
                "transit/decrypt/orders"
            ),
            None
        );
    }

    #[test]
    fn plus_matches_one_segment_and_priorities_follow_the_server() {
        let p = r#"path "transit/+/orders" { capabilities = ["update"] }"#;
        assert_eq!(
            decide(p, "transit/encrypt/orders"),
            Some(("transit/+/orders".into(), vec!["update"]))
        );
        assert_eq!(decide(p, "transit/datakey/wrapped/orders"), None);
        assert_eq!(
            decide(
                r#"path "transit/+/+/orders" { capabilities = ["update"] }"#,
                "transit/datakey/wrapped/orders"
            )
            .map(|d| d.0),
            Some("transit/+/+/orders".into())
        );
        // + with a trailing glob is a prefix pattern.
        assert!(
            decide(
                r#"path "+/datakey/*" { capabilities = ["update"] }"#,
                "transit/datakey/wrapped/orders"
            )
            .is_some()
        );
        // The first wildcard coming later wins: transit/encrypt/+ over transit/+/orders.
        let p = r#"
            path "transit/+/orders" { capabilities = ["update"] }
            path "transit/encrypt/+" { capabilities = ["read"] }
        "#;
        assert_eq!(
            decide(p, "transit/encrypt/orders").unwrap().0,
            "transit/encrypt/+"
        );
        // Same first wildcard: no trailing glob beats a glob.
        let p = r#"
            path "transit/+/orders*" { capabilities = ["read"] }
            path "transit/+/orders" { capabilities = ["update"] }
        "#;
        assert_eq!(
            decide(p, "transit/encrypt/orders").unwrap().0,
            "transit/+/orders"
        );
        // Then fewer + segments.
        let p = r#"
            path "transit/+/+" { capabilities = ["read"] }
            path "transit/+/orders" { capabilities = ["update"] }
        "#;
        assert_eq!(
            decide(p, "transit/encrypt/orders").unwrap().0,
            "transit/+/orders"
        );
        // A prefix glob whose * comes after the + pattern's first + loses to it.
        let p = r#"
            path "transit/encrypt/or*" { capabilities = ["read"] }
            path "transit/+/orders" { capabilities = ["update"] }
        "#;
        assert_eq!(
            decide(p, "transit/encrypt/orders").unwrap().0,
            "transit/encrypt/or*"
        );
        assert!(OpenbaoPolicy::parse(r#"path "a/+*" { capabilities = ["read"] }"#).is_err());
    }

    #[test]
    fn deny_wins_and_same_paths_merge() {
        let p = r#"
            path "transit/encrypt/orders" { capabilities = ["read"] }
            path "transit/encrypt/orders" { capabilities = ["update"] }
        "#;
        assert_eq!(
            decide(p, "transit/encrypt/orders"),
            Some(("transit/encrypt/orders".into(), vec!["read", "update"]))
        );
        let p = r#"
            path "transit/encrypt/orders" { capabilities = ["update"] }
            path "transit/encrypt/orders" { capabilities = ["deny"] }
        "#;
        assert_eq!(decide(p, "transit/encrypt/orders").unwrap().1, vec!["deny"]);
        let hcl = format!(
            "{}\npath \"transit/datakey/*\" {{ capabilities = [\"deny\"] }}\n",
            recommended_policy_hcl(&key())
        );
        // The exact rules still win over the deny glob for exact paths...
        assert!(check_openbao_policy(&hcl, &key()).unwrap().ok);
        // ...but a deny on the exact path is final, and merges across policies too.
        let deny = OpenbaoPolicy::parse(
            r#"path "transit/datakey/wrapped/orders" { capabilities = ["deny"] }"#,
        )
        .unwrap();
        let good = OpenbaoPolicy::parse(&recommended_policy_hcl(&key())).unwrap();
        let report = check_openbao_policies(&[good, deny], &key());
        let problems: Vec<_> = report.problems().collect();
        assert_eq!(problems.len(), 1);
        assert!(matches!(problems[0].verdict, TransitVerdict::Denied { .. }));
    }

    #[test]
    fn parameter_constraints_that_refuse_keyplane_are_reported() {
        let base = recommended_policy_hcl(&key());
        let with = |extra: &str| {
            base.replace(
                "path \"transit/encrypt/orders\" {\n  capabilities = [\"update\"]",
                &format!(
                    "path \"transit/encrypt/orders\" {{\n  capabilities = [\"update\"]\n  {extra}"
                ),
            )
        };
        let verdict = |extra: &str| {
            let r = check_openbao_policy(&with(extra), &key()).unwrap();
            r.findings
                .into_iter()
                .find(|f| f.requirement.endpoint == TransitEndpoint::Encrypt)
                .unwrap()
                .verdict
        };
        assert!(
            matches!(verdict(r#"allowed_parameters = { "plaintext" = [] }"#), TransitVerdict::Restricted { reason, .. } if reason.contains("associated_data"))
        );
        assert!(matches!(
            verdict(r#"allowed_parameters = { "*" = [] }"#),
            TransitVerdict::Granted { .. }
        ));
        assert!(matches!(
            verdict(
                r#"allowed_parameters = { "plaintext" = [], "context" = [], "associated_data" = [] }"#
            ),
            TransitVerdict::Granted { .. }
        ));
        assert!(matches!(
            verdict(r#"allowed_parameters = { "*" = [], "context" = ["abc"] }"#),
            TransitVerdict::Restricted { .. }
        ));
        assert!(matches!(
            verdict(r#"denied_parameters = { "context" = [] }"#),
            TransitVerdict::Restricted { .. }
        ));
        assert!(matches!(
            verdict(r#"denied_parameters = { "nonce" = [] }"#),
            TransitVerdict::Granted { .. }
        ));
        assert!(matches!(
            verdict(r#"required_parameters = ["key_version"]"#),
            TransitVerdict::Restricted { .. }
        ));
        assert!(matches!(
            verdict(r#"required_parameters = ["plaintext"]"#),
            TransitVerdict::Granted { .. }
        ));
        assert!(matches!(
            verdict(r#"min_wrapping_ttl = "1s""#),
            TransitVerdict::Restricted { .. }
        ));
        assert!(matches!(
            verdict(r#"max_wrapping_ttl = "90s""#),
            TransitVerdict::Granted { .. }
        ));
    }

    #[test]
    fn hcl_syntax_the_server_accepts() {
        let p = OpenbaoPolicy::parse(
            r#"
            # a comment
            // another
            /* and a
               block comment */
            path "transit/encrypt/orders" {
              capabilities = ["update",]   # trailing comma
              policy = "read"
            }
            path "transit/keys/orders" { policy = "read" }
            path "x/*" { capabilities = ["deny", "read"] }
            path "y" {
              capabilities = ["read"]
              allowed_parameters = {
                "a" = []
                "b" = ["1", "2"]
              }
              comment = "ignored"
            }
            "#,
        )
        .unwrap();
        assert_eq!(p.rules.len(), 4);
        assert_eq!(p.rules[0].line, 6);
        assert_eq!(
            p.rules[0].capabilities,
            BTreeSet::from([Capability::Update, Capability::Read, Capability::List])
        );
        assert_eq!(p.rules[2].capabilities, BTreeSet::from([Capability::Deny]));
        assert_eq!(
            p.rules[3].allowed_parameters.as_ref().unwrap()["b"],
            vec!["1", "2"]
        );
        assert_eq!(p.ignored, vec!["comment (path \"y\")"]);
    }

    #[test]
    fn the_json_form_is_read_too() {
        let json = r#"{"path": {"transit/encrypt/orders": {"capabilities": ["update"]},
                                "transit/+/orders": {"capabilities": ["update", "read"]}}}"#;
        let report = check_openbao_policy(json, &key()).unwrap();
        let problems: Vec<_> = report
            .problems()
            .map(|f| f.requirement.path.as_str())
            .collect();
        // datakey/* have three segments after the mount, + covers one only.
        assert_eq!(
            problems,
            [
                "transit/datakey/plaintext/orders",
                "transit/datakey/wrapped/orders"
            ]
        );
    }

    #[test]
    fn bad_policies_say_where() {
        let cases = [
            (r#"path "a" { capabilities = ["write"] }"#, "capability"),
            (r#"path "a" { capabilities = "read"  "#, "never closed"),
            ("path \"a { }", "never closed"),
            (r#"path "a" { capabilities = [read] }"#, "value"),
            (
                r#"path "a" { policy = "admin" }"#,
                "deny, read, write, sudo",
            ),
            (r#"path "a" { capabilities = 3 }"#, "list of strings"),
            ("/* open", "never closed"),
            ("", "no path rules"),
            ("name = \"x\"", "no path rules"),
            (r#"{"path": 3"#, "EOF"),
            (r#"path "a" { capabilities = <<EOF"#, "here-documents"),
        ];
        for (text, expected) in cases {
            let e = OpenbaoPolicy::parse(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
        let e = OpenbaoPolicy::parse("path \"a\" {\n  capabilities = [\"read\"]\n  x = \n}")
            .unwrap_err();
        assert!(
            matches!(e, OpenbaoPolicyError::Syntax { line: 4, .. }),
            "{e:?}"
        );
        let big = "#".repeat(MAX_OPENBAO_POLICY_BYTES + 1);
        assert_eq!(
            OpenbaoPolicy::parse(&big).unwrap_err(),
            OpenbaoPolicyError::TooLarge
        );
    }

    #[test]
    fn help_binds_the_policy_to_the_role() {
        let role = OpenbaoRole::approle(None, "keyplane").unwrap();
        let help = openbao_policy_help(&key(), &role);
        assert_eq!(help.provider_id, "auth/approle/role/keyplane");
        assert_eq!(help.policy_name, "keyplane-transit-orders");
        let shown: Vec<String> = help.commands.iter().map(|c| c.to_string()).collect();
        assert!(
            shown[0].starts_with("bao policy write keyplane-transit-orders - <<'EOF'\n# keyplane"),
            "{}",
            shown[0]
        );
        assert!(shown[0].ends_with("}\nEOF"), "{}", shown[0]);
        assert_eq!(
            shown[1],
            "bao write auth/approle/role/keyplane token_policies=keyplane-transit-orders token_ttl=1h token_max_ttl=24h token_type=service"
        );
        assert_eq!(
            shown[2],
            "bao read -field=role_id auth/approle/role/keyplane/role-id"
        );
        assert_eq!(
            shown[3],
            "bao write -f -field=secret_id auth/approle/role/keyplane/secret-id"
        );

        let ns_key = OpenbaoKeyRef::parse_in_namespace(
            "https://b/v1/team-a/kv/transit/keys/k",
            Some("team-a"),
        )
        .unwrap();
        let help = openbao_policy_help(&ns_key, &role);
        assert_eq!(help.policy_name, "keyplane-kv-transit-k");
        assert_eq!(
            help.commands[0].args[..3],
            ["policy", "write", "-namespace=team-a"]
        );
        assert!(help.policy_hcl.contains("path \"kv/transit/encrypt/k\""));
        assert!(help.policy_hcl.contains("in namespace \"team-a\""));
    }

    #[test]
    fn shell_quoting_keeps_odd_values_literal() {
        let c = BaoCommand {
            args: vec!["write".into(), "a b".into(), "it's".into()],
            stdin: None,
            purpose: "",
        };
        assert_eq!(c.to_string(), r#"bao write 'a b' 'it'\''s'"#);
    }
}
