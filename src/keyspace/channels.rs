//! Pub/sub channel rules: an old channel prefix -> a new one. Channels
//! belong to no database, so a rule is a prefix pair only.

/// Why a channel rule set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelRulesError {
    #[error("channel rule {0}: `from` must not be empty")]
    EmptyFrom(usize),
    #[error("channel rules {0} and {1} both rewrite `{2}`")]
    Duplicate(usize, usize, String),
    #[error(
        "channel rules {0} and {1} send channels to overlapping prefixes (messages could not be mapped back)"
    )]
    Ambiguous(usize, usize),
}

/// Validated channel rules; the longest matching prefix wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channels {
    /// (from, to), longest `from` first.
    rules: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Channels {
    pub fn new(rules: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Channels, ChannelRulesError> {
        for (i, (from, to)) in rules.iter().enumerate() {
            if from.is_empty() {
                return Err(ChannelRulesError::EmptyFrom(i));
            }
            for (j, (f2, t2)) in rules.iter().enumerate().skip(i + 1) {
                if from == f2 {
                    return Err(ChannelRulesError::Duplicate(
                        i,
                        j,
                        String::from_utf8_lossy(from).into_owned(),
                    ));
                }
                if to.starts_with(t2) || t2.starts_with(to) {
                    return Err(ChannelRulesError::Ambiguous(i, j));
                }
            }
        }
        let mut rules = rules;
        rules.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Ok(Channels { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.rules.iter().map(|(f, t)| (f.as_slice(), t.as_slice()))
    }

    /// The server's name of the client's channel `name`.
    pub fn forward(&self, name: &[u8]) -> Option<Vec<u8>> {
        let (from, to) = self.rules.iter().find(|(f, _)| name.starts_with(f))?;
        Some([to.as_slice(), &name[from.len()..]].concat())
    }

    /// A PSUBSCRIBE pattern: moved only when its literal head covers a
    /// rule's `from` (as key patterns).
    pub fn pattern(&self, pattern: &[u8]) -> Option<Vec<u8>> {
        let head = pattern
            .iter()
            .position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\'))
            .unwrap_or(pattern.len());
        let (from, to) = self
            .rules
            .iter()
            .find(|(f, _)| head >= f.len() && pattern.starts_with(f))?;
        Some([to.as_slice(), &pattern[from.len()..]].concat())
    }

    /// The client's name of the server's channel (or pattern) `name`.
    pub fn back(&self, name: &[u8]) -> Option<Vec<u8>> {
        let (from, to) = self.rules.iter().find(|(_, t)| name.starts_with(t))?;
        Some([from.as_slice(), &name[to.len()..]].concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Channels {
        Channels::new(vec![
            (b"saju:".to_vec(), b"saju_service:".to_vec()),
            (b"events:".to_vec(), b"shared_common:events:".to_vec()),
        ])
        .unwrap()
    }

    #[test]
    fn channels_and_patterns_move_and_come_back() {
        let c = rules();
        assert_eq!(c.forward(b"saju:done").unwrap(), b"saju_service:done");
        assert_eq!(c.forward(b"other"), None);
        assert_eq!(c.pattern(b"events:*").unwrap(), b"shared_common:events:*");
        assert_eq!(c.pattern(b"ev*"), None);
        assert_eq!(c.back(b"saju_service:done").unwrap(), b"saju:done");
        assert_eq!(c.back(b"shared_common:events:*").unwrap(), b"events:*");
    }

    #[test]
    fn bad_channel_rules_are_refused() {
        assert!(Channels::new(vec![(vec![], b"x".to_vec())]).is_err());
        assert!(
            Channels::new(vec![
                (b"a".to_vec(), b"x".to_vec()),
                (b"a".to_vec(), b"y".to_vec())
            ])
            .is_err()
        );
        assert!(
            Channels::new(vec![
                (b"a".to_vec(), b"x".to_vec()),
                (b"b".to_vec(), b"xy".to_vec())
            ])
            .is_err()
        );
    }
}
