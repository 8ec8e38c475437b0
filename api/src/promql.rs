//! A policy's own PromQL, held to the policy's namespace.
//!
//! A `Custom` query is parsed with a real PromQL parser, and every selector in it (each
//! alternative of an `or` selector too) is held to the namespace of the policy: a selector
//! that names no namespace gets `namespace="<the policy's>"`, one that names the policy's
//! namespace exactly is kept, and one that names another namespace, or matches namespaces
//! by pattern or exclusion, is refused rather than rewritten: the operator's Prometheus
//! sees every namespace, and a policy is written by one namespace's team.

use promql_parser::{
    label::{MatchOp, Matcher, Matchers},
    parser::{self, Expr, VectorSelector},
};

/// The label that names a series' namespace.
const NAMESPACE: &str = "namespace";

/// Why a policy's query is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// Not PromQL.
    #[error("does not parse{}: {message}", near(*.position))]
    Syntax {
        message: String,
        /// Where the query stops making sense, in characters from its start, when known.
        position: Option<usize>,
    },
    /// A selector names another namespace.
    #[error(
        "reads series of namespace {named} in `{selector}`, and a policy reads only its own \
         namespace ({own})"
    )]
    OtherNamespace {
        selector: String,
        named: String,
        own: String,
    },
    /// A selector matches namespaces by pattern or exclusion.
    #[error(
        "matches namespaces with `{matcher}` in `{selector}`; a policy reads only its own \
         namespace: leave the namespace out (it is added) or name it with namespace=\"...\""
    )]
    NamespacePattern { selector: String, matcher: String },
}

fn near(position: Option<usize>) -> String {
    position.map_or_else(String::new, |at| format!(" (at character {at})"))
}

/// `query` with every selector held to `namespace`: the query the operator sends.
pub fn confine(query: &str, namespace: &str) -> Result<String, QueryError> {
    let mut expr = parse(query)?;
    hold(&mut expr, Some(namespace))?;
    Ok(expr.to_string())
}

/// The offline verdict on `query` for a policy in `namespace` (unknown when a document names
/// none, and then only patterns and exclusions are refused).
pub fn check(query: &str, namespace: Option<&str>) -> Result<(), QueryError> {
    hold(&mut parse(query)?, namespace)
}

fn parse(query: &str) -> Result<Expr, QueryError> {
    parser::parse(query).map_err(|message| QueryError::Syntax {
        position: error_position(query),
        message,
    })
}

/// The longest query whose syntax error is located; beyond it the message has no position
/// (finding it parses every prefix a few times).
const LOCATED_QUERY_CHARS: usize = 2_000;

/// Operands and brackets that may complete a prefix: a prefix is the start of some query when
/// one of them, then its open quote and brackets closed, makes it parse.
const FILLERS: [&str; 6] = ["", " 1", "\"\"", "=\"\"", "x", "[1m]"];

/// Where `query` stops being the start of any query, in characters from its start (the
/// parser does not say): the first character, spaces skipped, after its longest prefix that
/// some operand or closing brackets would complete.
fn error_position(query: &str) -> Option<usize> {
    if query.chars().count() > LOCATED_QUERY_CHARS {
        return None;
    }
    let ends = query.char_indices().map(|(at, c)| at + c.len_utf8());
    let mut viable = 0;
    for (chars, end) in ends.enumerate() {
        if starts_a_query(&query[..end]) {
            viable = chars + 1;
        }
    }
    let spaces = query
        .chars()
        .skip(viable)
        .take_while(|c| c.is_whitespace())
        .count();
    Some(viable + spaces)
}

/// Whether something completes `prefix` into a query.
fn starts_a_query(prefix: &str) -> bool {
    let mut closers = Vec::new();
    let mut quote = None;
    let mut escaped = false;
    for c in prefix.chars() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' => closers.push(')'),
            '{' => closers.push('}'),
            '[' => closers.push(']'),
            ')' | '}' | ']' if closers.pop() != Some(c) => return false,
            _ => {}
        }
    }
    let closing: String = quote.into_iter().chain(closers.into_iter().rev()).collect();
    FILLERS
        .iter()
        .map(|filler| format!("{prefix}{filler}{closing}"))
        .chain([format!("{prefix}{closing} (x)")])
        .any(|candidate| parser::parse(&candidate).is_ok())
}

/// Holds every selector in `expr` to `namespace`.
fn hold(expr: &mut Expr, namespace: Option<&str>) -> Result<(), QueryError> {
    match expr {
        Expr::Aggregate(aggregate) => {
            hold(&mut aggregate.expr, namespace)?;
            match &mut aggregate.param {
                Some(param) => hold(param, namespace),
                None => Ok(()),
            }
        }
        Expr::Unary(unary) => hold(&mut unary.expr, namespace),
        Expr::Binary(binary) => {
            hold(&mut binary.lhs, namespace)?;
            hold(&mut binary.rhs, namespace)
        }
        Expr::Paren(paren) => hold(&mut paren.expr, namespace),
        Expr::Subquery(subquery) => hold(&mut subquery.expr, namespace),
        Expr::Call(call) => call
            .args
            .args
            .iter_mut()
            .try_for_each(|arg| hold(arg, namespace)),
        Expr::VectorSelector(selector) => hold_selector(selector, namespace),
        Expr::MatrixSelector(matrix) => hold_selector(&mut matrix.vs, namespace),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => Ok(()),
    }
}

fn hold_selector(selector: &mut VectorSelector, namespace: Option<&str>) -> Result<(), QueryError> {
    let shown = selector.to_string();
    let Matchers {
        matchers,
        or_matchers,
    } = &mut selector.matchers;
    if or_matchers.is_empty() {
        hold_group(matchers, namespace, &shown)
    } else {
        or_matchers
            .iter_mut()
            .try_for_each(|group| hold_group(group, namespace, &shown))
    }
}

/// One conjunction of matchers: its namespace matchers must all be `namespace="<own>"`; with
/// none, one is added.
fn hold_group(
    group: &mut Vec<Matcher>,
    namespace: Option<&str>,
    selector: &str,
) -> Result<(), QueryError> {
    let mut named = false;
    for matcher in group.iter().filter(|m| m.name == NAMESPACE) {
        if matcher.op != MatchOp::Equal {
            return Err(QueryError::NamespacePattern {
                selector: selector.to_owned(),
                matcher: matcher.to_string(),
            });
        }
        if let Some(own) = namespace
            && matcher.value != own
        {
            return Err(QueryError::OtherNamespace {
                selector: selector.to_owned(),
                named: matcher.value.clone(),
                own: own.to_owned(),
            });
        }
        named = true;
    }
    if let Some(own) = namespace
        && !named
    {
        group.push(Matcher::new(MatchOp::Equal, NAMESPACE, own));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_selector_gets_the_policys_namespace() {
        assert_eq!(
            confine("my_bytes", "shop").unwrap(),
            r#"my_bytes{namespace="shop"}"#
        );
        let confined = confine(
            r#"sum by (pod) (rate(a{job="x"}[5m])) / on (pod) group_left b + max_over_time(c[10m:1m])"#,
            "shop",
        )
        .unwrap();
        for selector in [
            r#"a{job="x",namespace="shop"}[5m]"#,
            r#"b{namespace="shop"}"#,
            r#"c{namespace="shop"}[10m:1m]"#,
        ] {
            assert!(confined.contains(selector), "{selector} in {confined}");
        }
        assert!(parser::parse(&confined).is_ok(), "{confined}");
    }

    #[test]
    fn the_policys_own_namespace_may_be_named() {
        assert_eq!(
            confine(r#"my_bytes{namespace="shop",pod!=""}"#, "shop").unwrap(),
            r#"my_bytes{namespace="shop",pod!=""}"#
        );
    }

    #[test]
    fn another_namespace_is_refused_not_rewritten() {
        let error = confine(r#"sum(my_bytes{namespace="bank"}) by (pod)"#, "shop").unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"reads series of namespace bank in `my_bytes{namespace="bank"}`, and a policy reads only its own namespace (shop)"#
        );
        // In an alternative of an `or` selector too.
        assert!(matches!(
            confine(r#"{__name__="x", namespace="shop" or __name__="x", namespace="bank"}"#, "shop"),
            Err(QueryError::OtherNamespace { named, .. }) if named == "bank"
        ));
    }

    #[test]
    fn namespace_patterns_and_exclusions_are_refused() {
        for query in [
            r#"my_bytes{namespace=~"shop|bank"}"#,
            r#"my_bytes{namespace!="shop"}"#,
            r#"my_bytes{namespace!~"kube-.*"}"#,
            r#"my_bytes{namespace="shop",namespace=~".+"}"#,
        ] {
            assert!(
                matches!(
                    confine(query, "shop"),
                    Err(QueryError::NamespacePattern { .. })
                ),
                "{query}"
            );
            assert!(check(query, None).is_err(), "{query}");
        }
    }

    #[test]
    fn without_a_known_namespace_only_patterns_are_judged() {
        assert_eq!(check(r#"my_bytes{namespace="bank"}"#, None), Ok(()));
        assert!(check(r#"my_bytes{namespace="bank"}"#, Some("shop")).is_err());
        assert_eq!(check("my_bytes", Some("shop")), Ok(()));
    }

    #[test]
    fn a_query_that_does_not_parse_says_where() {
        for (query, at) in [
            ("sum(my_bytes", 12),
            ("my_bytes{pod=}", 13),
            ("my_bytes + * 2", 11),
            ("rate(my_bytes[5m]) by", 19),
            ("", 0),
        ] {
            match check(query, None) {
                Err(QueryError::Syntax { position, .. }) => {
                    assert_eq!(position, Some(at), "{query}")
                }
                other => panic!("{query}: {other:?}"),
            }
        }
        let message = check("my_bytes{pod=}", None).unwrap_err().to_string();
        assert!(
            message.starts_with("does not parse (at character 13): "),
            "{message}"
        );
    }
}
