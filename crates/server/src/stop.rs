//! Stop strings on streamed text. Text that could be the start of a stop string is held back
//! until the next piece shows whether it is one, so a client never sees part of a stop string;
//! each piece carries the items (tokens) that produced it, released together with its text.

/// Text pieces in, text safe to show out; ends at the first stop string.
#[derive(Debug, Clone)]
pub struct StopBuffer<T> {
    stops: Vec<String>,
    /// Text held back, not shown yet.
    held: String,
    /// Items of the held text with the end offset (in `held`) of each one's text.
    items: Vec<(T, usize)>,
    stopped: bool,
}

/// What one push releases.
#[derive(Debug, Clone, PartialEq)]
pub struct Released<T> {
    pub text: String,
    pub items: Vec<T>,
    /// A stop string matched: `text` ends just before it and nothing more will come.
    pub stopped: bool,
}

impl<T> StopBuffer<T> {
    /// Empty strings are ignored.
    pub fn new(stops: Vec<String>) -> Self {
        StopBuffer {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            items: Vec::new(),
            stopped: false,
        }
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds the text one item produced (possibly empty) and releases what is safe to show.
    pub fn push(&mut self, text: &str, item: T) -> Released<T> {
        self.feed(text, Some(item))
    }

    /// Adds text that belongs to no item (e.g. bytes a decoder flushed at the end).
    pub fn push_text(&mut self, text: &str) -> Released<T> {
        self.feed(text, None)
    }

    fn feed(&mut self, text: &str, item: Option<T>) -> Released<T> {
        if self.stopped {
            return Released {
                text: String::new(),
                items: Vec::new(),
                stopped: true,
            };
        }
        self.held.push_str(text);
        if let Some(item) = item {
            self.items.push((item, self.held.len()));
        }
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first {
            self.stopped = true;
            // Items whose text starts before the stop string are shown; the rest belong to it.
            let mut start = 0;
            let mut keep = 0;
            for (_, end) in &self.items {
                if start < at {
                    keep += 1;
                }
                start = *end;
            }
            let text = self.held[..at].to_string();
            let items = self.items.drain(..).take(keep).map(|(t, _)| t).collect();
            self.held.clear();
            return Released {
                text,
                items,
                stopped: true,
            };
        }
        let hold = self.partial_suffix();
        let cut = self.held.len() - hold;
        self.release(cut)
    }

    /// Releases everything held (the generation ended without a stop string).
    pub fn finish(&mut self) -> Released<T> {
        let cut = self.held.len();
        self.release(cut)
    }

    /// Shows `held[..cut]` and every item whose text starts before `cut` (or is empty and
    /// ends by it): an item is shown as soon as any of its text is.
    fn release(&mut self, cut: usize) -> Released<T> {
        let text: String = self.held.drain(..cut).collect();
        let mut start = 0;
        let mut n = 0;
        for (_, end) in &self.items {
            if start < cut || *end <= cut {
                n += 1;
                start = *end;
            } else {
                break;
            }
        }
        let items = self.items.drain(..n).map(|(t, _)| t).collect();
        for (_, end) in &mut self.items {
            *end -= cut;
        }
        Released {
            text,
            items,
            stopped: self.stopped,
        }
    }

    /// Length of the longest suffix of the held text that is a proper prefix of a stop string.
    fn partial_suffix(&self) -> usize {
        let mut best = 0;
        for s in &self.stops {
            let max = s.len().saturating_sub(1).min(self.held.len());
            for len in (best + 1..=max).rev() {
                let start = self.held.len() - len;
                if self.held.is_char_boundary(start) && s.starts_with(&self.held[start..]) {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (Vec<String>, Vec<usize>, bool) {
        let mut b = StopBuffer::new(stops.iter().map(|s| s.to_string()).collect());
        let mut shown = Vec::new();
        let mut items = Vec::new();
        for (i, p) in pieces.iter().enumerate() {
            let r = b.push(p, i);
            shown.push(r.text);
            items.extend(r.items);
            if r.stopped {
                return (shown, items, true);
            }
        }
        let r = b.finish();
        shown.push(r.text);
        items.extend(r.items);
        (shown, items, false)
    }

    #[test]
    fn holds_back_a_possible_start_and_releases_it_when_it_is_not_one() {
        let (shown, items, stopped) = run(&["END"], &["a E", "N", "x", "y"]);
        assert_eq!(shown, ["a ", "", "ENx", "y", ""]);
        assert_eq!(items, [0, 1, 2, 3]);
        assert!(!stopped);
        // An item is released with the first of its text; one held whole waits.
        let (shown, items, stopped) = run(&["END"], &["ab", "E"]);
        assert_eq!(shown, ["ab", "", "E"]);
        assert_eq!(items, [0, 1]);
        assert!(!stopped);
    }

    #[test]
    fn a_stop_string_split_over_pieces_is_never_shown() {
        let (shown, items, stopped) = run(&["END"], &["one E", "N", "D two"]);
        assert_eq!(shown.concat(), "one ");
        assert!(stopped);
        // The piece holding "one E" started before the stop string; the others belong to it.
        assert_eq!(items, [0]);
    }

    #[test]
    fn earliest_of_several_stop_strings_wins() {
        let (shown, _, stopped) = run(&["xyz", "b"], &["a", "bcxyz"]);
        assert_eq!(shown.concat(), "a");
        assert!(stopped);
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let (shown, _, stopped) = run(&["éa"], &["café", "b"]);
        assert_eq!(shown.concat(), "caféb");
        assert!(!stopped);
        let (shown, _, stopped) = run(&["éa"], &["café", "a!"]);
        assert_eq!(shown.concat(), "caf");
        assert!(stopped);
    }

    #[test]
    fn without_stop_strings_everything_passes_at_once() {
        let (shown, items, _) = run(&[], &["a", "", "b"]);
        assert_eq!(shown, ["a", "", "b", ""]);
        assert_eq!(items, [0, 1, 2]);
    }
}
