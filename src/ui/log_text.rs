//! A job's log as the page shows it, made a piece at a time: bytes in, text out, with the ANSI
//! escapes stripped and line ends made `\n`. What a piece cannot finish (half a UTF-8 character,
//! an escape sequence not yet ended, a CR that may be the first half of a CRLF) is held for the
//! next piece, so a split never shows as garbage or as half an escape.

use super::origin::strip_ansi;

/// The most a piece's tail is held back: room for the longest OSC sequence [`strip_ansi`] hides
/// (256 characters of up to 4 bytes). Anything longer is not an escape still being written.
const MAX_HELD: usize = 1040;

/// The text made so far of a log's bytes, and the unfinished tail held for the next piece.
#[derive(Default)]
pub struct LogText {
    held: Vec<u8>,
}

impl LogText {
    /// The text of `piece` (after what was held), but for an unfinished tail, held for the next.
    pub fn push(&mut self, piece: &[u8]) -> String {
        self.held.extend_from_slice(piece);
        let end = finished_len(&self.held);
        let text = show(&self.held[..end]);
        self.held.drain(..end);
        text
    }

    /// The text of what is still held, at the log's end.
    pub fn finish(&mut self) -> String {
        show(&std::mem::take(&mut self.held))
    }

    /// How many bytes are held, not shown yet.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// `bytes` as page text: decoded (an invalid byte shows as U+FFFD), without ANSI escapes, with
/// CRLF and a lone CR made LF, as a browser reads them in a `<pre>`.
fn show(bytes: &[u8]) -> String {
    strip_ansi(&String::from_utf8_lossy(bytes))
        .replace("\r\n", "\n")
        .replace('\r', "\n")
}

/// How much of `bytes` can be shown now: all but a tail that a later piece may finish.
fn finished_len(bytes: &[u8]) -> usize {
    let mut end = bytes.len() - unfinished_character(bytes);
    if let Some(start) = unfinished_escape(&bytes[..end]) {
        end = start;
    }
    if bytes[..end].ends_with(b"\r") {
        end -= 1;
    }
    end
}

/// How many bytes at the end of `bytes` begin a UTF-8 character they do not finish.
fn unfinished_character(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            // A continuation byte: its character starts further back.
            continue;
        }
        let length = match byte {
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => 1,
        };
        return if length > back { back } else { 0 };
    }
    0
}

/// Where an escape sequence starts that `bytes` may end before it does: the last ESC (or C1 CSI)
/// in the last [`MAX_HELD`] bytes, with no line end after it, whose sequence is still open.
fn unfinished_escape(bytes: &[u8]) -> Option<usize> {
    let window = bytes.len().saturating_sub(MAX_HELD);
    let start = window
        + bytes[window..]
            .windows(2)
            .rposition(|pair| pair == b"\xc2\x9b")
            .into_iter()
            .chain(bytes[window..].iter().rposition(|&byte| byte == 0x1b))
            .max()?;
    let tail = &bytes[start..];
    (!tail.contains(&b'\n') && is_open(&String::from_utf8_lossy(tail))).then_some(start)
}

/// Whether an escape sequence that starts `tail` (and runs to its end) may go on: what follows
/// its introducer is all bytes that come before the end of a sequence of its kind, as
/// [`strip_ansi`] reads them.
fn is_open(tail: &str) -> bool {
    let all_in = |rest: &str, range: std::ops::RangeInclusive<u8>| {
        rest.bytes().all(|byte| range.contains(&byte))
    };
    if let Some(rest) = tail
        .strip_prefix("\x1b[")
        .or_else(|| tail.strip_prefix('\u{9b}'))
    {
        // CSI: parameter and intermediate bytes, until a final byte.
        return all_in(rest, 0x20..=0x3f);
    }
    if let Some(rest) = tail.strip_prefix("\x1b]") {
        // OSC: until BEL or ST, or 256 characters.
        return !rest.contains('\x07') && rest.chars().count() < 256;
    }
    // The other escapes: intermediate bytes, until a final byte.
    tail.strip_prefix('\x1b')
        .is_some_and(|rest| all_in(rest, 0x20..=0x2f))
}

#[cfg(test)]
mod tests {
    use super::LogText;

    /// Every way of cutting `log` in two gives the text of the whole log.
    fn check(log: &[u8], expected: &str) {
        for cut in 0..=log.len() {
            let mut text = LogText::default();
            let mut shown = text.push(&log[..cut]);
            shown += &text.push(&log[cut..]);
            shown += &text.finish();
            assert_eq!(shown, expected, "{log:?} cut at {cut}");
        }
    }

    #[test]
    fn a_split_never_garbles_a_character_an_escape_or_a_line_end() {
        let cases: [(&[u8], &str); 8] = [
            (b"plain <b>text</b>\n", "plain <b>text</b>\n"),
            (
                "h\u{e9}llo \u{1f600}\n".as_bytes(),
                "h\u{e9}llo \u{1f600}\n",
            ),
            (b"\x1b[1;31mred\x1b[0m done\n", "red done\n"),
            (b"\x1b]0;title\x07after", "after"),
            (b"a\r\nb\rc\n", "a\nb\nc\n"),
            ("\u{9b}31mC1\n".as_bytes(), "C1\n"),
            (b"bad \xff byte", "bad \u{fffd} byte"),
            (b"ends with \x1b[", "ends with "),
        ];
        for (log, expected) in cases {
            check(log, expected);
        }
    }

    #[test]
    fn holds_only_an_unfinished_tail() {
        let mut text = LogText::default();
        assert_eq!(text.push(b"one\n\xe2\x82"), "one\n");
        assert_eq!(text.held(), 2);
        assert_eq!(text.push(b"\xac \x1b[3"), "\u{20ac} ");
        assert_eq!(text.held(), 3);
        assert_eq!(text.push(b"2mgreen\r"), "green");
        assert_eq!(text.held(), 1);
        assert_eq!(text.finish(), "\n");
        // A long run after an ESC is not an escape being written: it is not held for ever.
        let long = [b"\x1b]".as_slice(), &[b'x'; 400]].concat();
        let mut text = LogText::default();
        assert_eq!(text.push(&long).len(), 400 - 256);
        assert_eq!(text.held(), 0);
    }
}
