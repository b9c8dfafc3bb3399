//! Placement constraints: whether an agent may take one more member of an instance.
//!
//! Constraints are Marathon's, on `hostname` or on an agent attribute (text, scalar,
//! ranges or set, compared in their text form):
//!
//! | operator | holds when the candidate agent's value … |
//! |---|---|
//! | `UNIQUE` | differs from the value of every agent running another member |
//! | `CLUSTER v` | equals `v`; without `v`, equals the value of the other members' agents |
//! | `GROUP_BY [n]` | has no more members than the least used known value (spread evenly) |
//! | `LIKE re` | matches the regular expression `re` as a whole |
//! | `UNLIKE re` | does not match `re` as a whole |
//! | `MAX_PER n` | has fewer than `n` members |
//!
//! An agent without the field meets only `UNLIKE`: a member is never placed where a
//! rule cannot be checked. `max_per_agent` limits members per agent id.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

use mesos_stateful_proto::v1;
use mesos_stateful_store::records::{Constraint, ConstraintOperator, PlacementSpec};

/// The field every agent has besides its attributes.
pub const HOSTNAME: &str = "hostname";

/// What constraints can see of an agent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFacts {
    /// Mesos agent id.
    pub agent_id: String,
    /// Host name of the agent.
    pub hostname: String,
    /// Attributes by name, in text form.
    pub attributes: BTreeMap<String, String>,
}

impl AgentFacts {
    /// The facts an offer carries about its agent.
    pub fn from_offer(offer: &v1::Offer) -> Self {
        AgentFacts {
            agent_id: offer.agent_id.value.clone(),
            hostname: offer.hostname.clone(),
            attributes: offer
                .attributes
                .iter()
                .map(|attribute| (attribute.name.clone(), attribute_text(attribute)))
                .collect(),
        }
    }

    /// The value of `field`: the host name or an attribute.
    pub fn field(&self, field: &str) -> Option<&str> {
        if field == HOSTNAME {
            Some(&self.hostname)
        } else {
            self.attributes.get(field).map(String::as_str)
        }
    }
}

/// The text form of an attribute, as Mesos prints it (`rack-1`, `2`, `[1-4]`, `{a,b}`).
pub fn attribute_text(attribute: &v1::Attribute) -> String {
    if let Some(text) = &attribute.text {
        return text.value.clone();
    }
    if let Some(scalar) = &attribute.scalar {
        return format!("{}", scalar.value);
    }
    if let Some(ranges) = &attribute.ranges {
        let parts: Vec<String> = ranges
            .range
            .iter()
            .map(|r| format!("{}-{}", r.begin, r.end))
            .collect();
        return format!("[{}]", parts.join(","));
    }
    if let Some(set) = &attribute.set {
        return format!("{{{}}}", set.item.join(","));
    }
    String::new()
}

/// An instance's placement rules, ready to evaluate (regular expressions compiled).
#[derive(Debug, Clone, Default)]
pub struct PlacementRules {
    max_per_agent: Option<u32>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    constraint: Constraint,
    /// Compiled `LIKE`/`UNLIKE` pattern, anchored on the whole value.
    pattern: Option<Regex>,
    /// Parsed number of `MAX_PER` and `GROUP_BY`.
    number: Option<u32>,
}

impl PlacementRules {
    /// Compiles `spec`; fails with the reason when a value is malformed.
    pub fn compile(spec: &PlacementSpec) -> Result<Self, String> {
        if spec.max_per_agent == Some(0) {
            return Err("max_per_agent must be at least 1".to_string());
        }
        let rules = spec
            .constraints
            .iter()
            .map(compile_rule)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PlacementRules {
            max_per_agent: spec.max_per_agent,
            rules,
        })
    }

    /// Whether no rule is set.
    pub fn is_empty(&self) -> bool {
        self.max_per_agent.is_none() && self.rules.is_empty()
    }

    /// Whether `candidate` may take one more member, given the agents of the
    /// instance's other members (one entry per member) and every agent known in this
    /// round. On refusal, the reason names the rule
    /// (`constraint hostname:UNIQUE unmet`).
    pub fn check(
        &self,
        candidate: &AgentFacts,
        peers: &[&AgentFacts],
        known: &[&AgentFacts],
    ) -> Result<(), String> {
        if let Some(max) = self.max_per_agent {
            let here = peers
                .iter()
                .filter(|p| p.agent_id == candidate.agent_id)
                .count();
            if here >= max as usize {
                return Err(format!("max_per_agent {max} reached"));
            }
        }
        for rule in &self.rules {
            if !rule.holds(candidate, peers, known) {
                return Err(format!("constraint {} unmet", describe(&rule.constraint)));
            }
        }
        Ok(())
    }
}

impl Rule {
    fn holds(&self, candidate: &AgentFacts, peers: &[&AgentFacts], known: &[&AgentFacts]) -> bool {
        let field = self.constraint.field.as_str();
        let Some(value) = candidate.field(field) else {
            return self.constraint.operator == ConstraintOperator::Unlike;
        };
        let peer_values = || peers.iter().filter_map(|p| p.field(field));
        match self.constraint.operator {
            ConstraintOperator::Unique => peer_values().all(|v| v != value),
            ConstraintOperator::Cluster => match &self.constraint.value {
                Some(wanted) => value == wanted,
                None => peer_values().all(|v| v == value),
            },
            ConstraintOperator::Like => self.pattern.as_ref().is_some_and(|p| p.is_match(value)),
            ConstraintOperator::Unlike => !self.pattern.as_ref().is_some_and(|p| p.is_match(value)),
            ConstraintOperator::MaxPer => {
                let max = self.number.unwrap_or(1) as usize;
                peer_values().filter(|v| *v == value).count() < max
            }
            ConstraintOperator::GroupBy => {
                let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
                for agent in known.iter().chain(peers.iter()) {
                    if let Some(v) = agent.field(field) {
                        counts.entry(v).or_insert(0);
                    }
                }
                for v in peer_values() {
                    *counts.entry(v).or_insert(0) += 1;
                }
                // Values not yet seen count as empty groups while fewer than the
                // expected number of groups are known.
                let distinct: BTreeSet<&str> = counts.keys().copied().collect();
                let expected = self.number.unwrap_or(0) as usize;
                let least = if distinct.len() < expected {
                    0
                } else {
                    counts.values().copied().min().unwrap_or(0)
                };
                counts.get(value).copied().unwrap_or(0) <= least
            }
        }
    }
}

fn compile_rule(constraint: &Constraint) -> Result<Rule, String> {
    let name = describe(constraint);
    if constraint.field.is_empty() {
        return Err(format!("constraint {name}: empty field"));
    }
    let value = constraint.value.as_deref();
    let number = |required: bool| -> Result<Option<u32>, String> {
        match value {
            None if required => Err(format!("constraint {name}: a number is required")),
            None => Ok(None),
            Some(text) => match text.parse::<u32>() {
                Ok(n) if n >= 1 => Ok(Some(n)),
                _ => Err(format!(
                    "constraint {name}: {text:?} is not a number of at least 1"
                )),
            },
        }
    };
    let mut rule = Rule {
        constraint: constraint.clone(),
        pattern: None,
        number: None,
    };
    match constraint.operator {
        ConstraintOperator::Unique => {
            if value.is_some() {
                return Err(format!("constraint {name}: UNIQUE takes no value"));
            }
        }
        ConstraintOperator::Cluster => {}
        ConstraintOperator::GroupBy => rule.number = number(false)?,
        ConstraintOperator::MaxPer => rule.number = number(true)?,
        ConstraintOperator::Like | ConstraintOperator::Unlike => {
            let Some(pattern) = value else {
                return Err(format!(
                    "constraint {name}: a regular expression is required"
                ));
            };
            let anchored = format!("^(?:{pattern})$");
            rule.pattern = Some(
                Regex::new(&anchored)
                    .map_err(|e| format!("constraint {name}: invalid regular expression: {e}"))?,
            );
        }
    }
    Ok(rule)
}

/// `field:OPERATOR[:value]`, as constraints are named in reasons.
pub fn describe(constraint: &Constraint) -> String {
    match &constraint.value {
        Some(value) => format!(
            "{}:{}:{}",
            constraint.field,
            constraint.operator.as_str(),
            value
        ),
        None => format!("{}:{}", constraint.field, constraint.operator.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, attributes: &[(&str, &str)]) -> AgentFacts {
        AgentFacts {
            agent_id: id.into(),
            hostname: format!("{id}.example"),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn rules(
        max_per_agent: Option<u32>,
        constraints: &[(&str, ConstraintOperator, Option<&str>)],
    ) -> PlacementRules {
        PlacementRules::compile(&PlacementSpec {
            max_per_agent,
            constraints: constraints
                .iter()
                .map(|(field, operator, value)| Constraint {
                    field: field.to_string(),
                    operator: *operator,
                    value: value.map(String::from),
                })
                .collect(),
        })
        .unwrap()
    }

    use ConstraintOperator::*;

    #[test]
    fn unique_refuses_a_value_already_used() {
        let r = rules(None, &[("hostname", Unique, None)]);
        let (a1, a2) = (agent("a1", &[]), agent("a2", &[]));
        assert_eq!(r.check(&a1, &[], &[]), Ok(()));
        assert_eq!(
            r.check(&a1, &[&a1], &[]),
            Err("constraint hostname:UNIQUE unmet".to_string())
        );
        assert_eq!(r.check(&a2, &[&a1], &[]), Ok(()));
        let r = rules(None, &[("rack", Unique, None)]);
        let (r1, r1b) = (
            agent("a1", &[("rack", "r1")]),
            agent("a2", &[("rack", "r1")]),
        );
        assert!(r.check(&r1b, &[&r1], &[]).is_err());
        // An agent without the attribute cannot prove uniqueness.
        assert!(r.check(&agent("a3", &[]), &[], &[]).is_err());
    }

    #[test]
    fn cluster_keeps_members_on_one_value() {
        let r = rules(None, &[("zone", Cluster, Some("east"))]);
        assert!(r.check(&agent("a1", &[("zone", "east")]), &[], &[]).is_ok());
        assert_eq!(
            r.check(&agent("a1", &[("zone", "west")]), &[], &[]),
            Err("constraint zone:CLUSTER:east unmet".to_string())
        );
        // Without a value: wherever the first member went.
        let r = rules(None, &[("zone", Cluster, None)]);
        let west = agent("a1", &[("zone", "west")]);
        assert!(r.check(&agent("a2", &[("zone", "east")]), &[], &[]).is_ok());
        assert!(r
            .check(&agent("a2", &[("zone", "east")]), &[&west], &[])
            .is_err());
        assert!(r
            .check(&agent("a3", &[("zone", "west")]), &[&west], &[])
            .is_ok());
    }

    #[test]
    fn like_and_unlike_match_whole_values() {
        let check = |op, pattern: &str, value: Option<&str>, ok: bool| {
            let r = rules(None, &[("rack", op, Some(pattern))]);
            let attributes: Vec<(&str, &str)> =
                value.map(|v| vec![("rack", v)]).unwrap_or_default();
            assert_eq!(
                r.check(&agent("a1", &attributes), &[], &[]).is_ok(),
                ok,
                "{op:?} {pattern} {value:?}"
            );
        };
        check(Like, "rack-[12]", Some("rack-1"), true);
        check(Like, "rack-[12]", Some("rack-12"), false);
        check(Like, "rack-[12]", None, false);
        check(Unlike, "rack-[12]", Some("rack-1"), false);
        check(Unlike, "rack-[12]", Some("rack-3"), true);
        check(Unlike, "rack-[12]", None, true);
    }

    #[test]
    fn max_per_and_max_per_agent_count_members() {
        let r = rules(None, &[("rack", MaxPer, Some("2"))]);
        let (a, b, c) = (
            agent("a1", &[("rack", "r1")]),
            agent("a2", &[("rack", "r1")]),
            agent("a3", &[("rack", "r1")]),
        );
        assert!(r.check(&c, &[&a], &[]).is_ok());
        assert_eq!(
            r.check(&c, &[&a, &b], &[]),
            Err("constraint rack:MAX_PER:2 unmet".to_string())
        );
        let r = rules(Some(2), &[]);
        assert!(r.check(&a, &[&a], &[]).is_ok());
        assert_eq!(
            r.check(&a, &[&a, &a], &[]),
            Err("max_per_agent 2 reached".to_string())
        );
        assert!(r.check(&b, &[&a, &a], &[]).is_ok());
    }

    #[test]
    fn group_by_spreads_evenly_over_known_values() {
        let r = rules(None, &[("zone", GroupBy, None)]);
        let e1 = agent("a1", &[("zone", "east")]);
        let e2 = agent("a2", &[("zone", "east")]);
        let w1 = agent("a3", &[("zone", "west")]);
        // One member in east: the next goes west while west is known and empty.
        assert!(r.check(&e2, &[&e1], &[&e2, &w1]).is_err());
        assert!(r.check(&w1, &[&e1], &[&e2, &w1]).is_ok());
        // Only east is known: east it is.
        assert!(r.check(&e2, &[&e1], &[&e2]).is_ok());
        // With an expected number of groups, an unseen group counts as empty.
        let r = rules(None, &[("zone", GroupBy, Some("2"))]);
        assert!(r.check(&e2, &[&e1], &[&e2]).is_err());
    }

    #[test]
    fn malformed_rules_are_refused_with_the_reason() {
        let compile = |op, value: Option<&str>| {
            PlacementRules::compile(&PlacementSpec {
                max_per_agent: None,
                constraints: vec![Constraint {
                    field: "rack".into(),
                    operator: op,
                    value: value.map(String::from),
                }],
            })
        };
        assert!(compile(Like, Some("("))
            .unwrap_err()
            .contains("invalid regular expression"));
        assert!(compile(Like, None).is_err());
        assert!(compile(MaxPer, Some("0")).is_err());
        assert!(compile(MaxPer, Some("x")).is_err());
        assert!(compile(MaxPer, None).is_err());
        assert!(compile(Unique, Some("x")).is_err());
        assert!(compile(GroupBy, None).is_ok());
        assert!(PlacementRules::compile(&PlacementSpec {
            max_per_agent: Some(0),
            constraints: Vec::new()
        })
        .is_err());
    }

    #[test]
    fn attributes_read_in_text_form() {
        let offer = v1::Offer {
            hostname: "h1".into(),
            attributes: vec![
                v1::Attribute {
                    name: "rack".into(),
                    r#type: v1::value::Type::Text as i32,
                    text: Some(v1::value::Text { value: "r1".into() }),
                    ..Default::default()
                },
                v1::Attribute {
                    name: "level".into(),
                    r#type: v1::value::Type::Scalar as i32,
                    scalar: Some(v1::value::Scalar { value: 2.0 }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let facts = AgentFacts::from_offer(&offer);
        assert_eq!(facts.field("hostname"), Some("h1"));
        assert_eq!(facts.field("rack"), Some("r1"));
        assert_eq!(facts.field("level"), Some("2"));
        assert_eq!(facts.field("zone"), None);
    }
}
