//! Training data as token ids: SFT sequences with a loss mask on assistant tokens, packed into
//! rows whose examples cannot attend to each other; DPO pairs as prompt + chosen / rejected; a
//! seeded shuffle whose state fits in one integer, so a checkpoint can restore it.

use medalign_model::{ChatTemplate, Message, Tokenizer};

/// One tokenized SFT example: `ids` with `mask[i] = true` where token `i` is a loss target.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Whether each token carries loss.
    pub mask: Vec<bool>,
}

impl Sequence {
    /// Number of loss targets (tokens after the first whose mask is set).
    pub fn targets(&self) -> usize {
        self.mask.iter().skip(1).filter(|&&m| m).count()
    }
}

/// One tokenized preference pair: the prompt shared, the two replies after it.
#[derive(Debug, Clone, PartialEq)]
pub struct PairSequence {
    /// Identifies the pair (the prompt id), to match reference log-probs.
    pub id: String,
    /// Prompt + chosen reply, mask on the reply.
    pub chosen: Sequence,
    /// Prompt + rejected reply, mask on the reply.
    pub rejected: Sequence,
}

/// Which tokens of a conversation carry loss.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LossOn {
    /// The assistant turns only (the template's markers of an assistant turn included).
    Assistant,
    /// Every token.
    All,
}

/// Tokenizes conversations with a model's chat template.
pub struct ChatTokenizer<'a> {
    /// The model's tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// The model's chat template.
    pub template: &'a ChatTemplate,
    /// Longest sequence kept (longer ones are cut at the end).
    pub max_len: usize,
}

impl ChatTokenizer<'_> {
    fn encode(&self, messages: &[Message], open: bool) -> Result<Vec<u32>, String> {
        let text = self.template.render(messages, open).map_err(|e| e.to_string())?;
        self.tokenizer.encode(&text, false).map_err(|e| e.to_string())
    }

    /// The whole conversation with the loss mask; `None` when no assistant token survives.
    /// Each assistant turn's tokens are those between the prompt up to it (with the generation
    /// prompt open) and the conversation through it.
    pub fn sequence(
        &self,
        messages: &[Message],
        loss_on: LossOn,
    ) -> Result<Option<Sequence>, String> {
        let ids = self.encode(messages, false)?;
        let mut mask = vec![loss_on == LossOn::All; ids.len()];
        if loss_on == LossOn::Assistant {
            for (i, _) in messages.iter().enumerate().filter(|(_, m)| m.role == "assistant") {
                let start = common_prefix(&self.encode(&messages[..i], true)?, &ids);
                let end = common_prefix(&self.encode(&messages[..=i], false)?, &ids);
                mask[start..end.max(start)].iter_mut().for_each(|x| *x = true);
            }
        }
        let n = ids.len().min(self.max_len);
        let seq = Sequence { ids: ids[..n].to_vec(), mask: mask[..n].to_vec() };
        Ok((seq.targets() > 0).then_some(seq))
    }

    /// A preference pair: `prompt` followed by each reply as an assistant turn.
    pub fn pair(
        &self,
        id: &str,
        prompt: &[Message],
        chosen: &str,
        rejected: &str,
    ) -> Result<Option<PairSequence>, String> {
        let with = |reply: &str| {
            let mut m = prompt.to_vec();
            m.push(Message::new("assistant", reply));
            self.sequence(&m, LossOn::Assistant)
        };
        Ok(match (with(chosen)?, with(rejected)?) {
            (Some(c), Some(r)) => Some(PairSequence { id: id.to_string(), chosen: c, rejected: r }),
            _ => None,
        })
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One row of a micro-batch: token ids and, per token, its segment (packed example) and mask.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Segment number of each token; padding has its own.
    pub segments: Vec<u32>,
    /// Loss mask.
    pub mask: Vec<bool>,
}

impl Row {
    /// Appends `seq` as a new segment.
    pub fn push(&mut self, seq: &Sequence) {
        let seg = self.segments.last().map_or(0, |s| s + 1);
        self.ids.extend_from_slice(&seq.ids);
        self.mask.extend_from_slice(&seq.mask);
        self.segments.extend(std::iter::repeat_n(seg, seq.ids.len()));
    }

    /// Pads to `len` with a padding segment that carries no loss.
    pub fn pad_to(&mut self, len: usize, pad_id: u32) {
        let seg = self.segments.last().map_or(0, |s| s + 1);
        while self.ids.len() < len {
            self.ids.push(pad_id);
            self.mask.push(false);
            self.segments.push(seg);
        }
    }
}

/// Packs `seqs` (in order) into rows of at most `max_len` tokens, first fit: each sequence goes
/// into the first open row with room, else starts a new one. Without packing, one per row.
pub fn pack(seqs: &[&Sequence], max_len: usize, packing: bool) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for s in seqs {
        let slot = if packing {
            rows.iter_mut().find(|r| r.ids.len() + s.ids.len() <= max_len)
        } else {
            None
        };
        match slot {
            Some(r) => r.push(s),
            None => {
                let mut r = Row::default();
                r.push(s);
                rows.push(r);
            }
        }
    }
    rows
}

/// SplitMix64: a tiny generator whose whole state is one `u64` (saved in checkpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform index below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            p.swap(i, self.below(i + 1));
        }
        p
    }
}

/// Whether the item named `id` belongs to the held-out set of fraction `fraction` (stable under
/// reordering and additions: decided by a hash of the id and the seed).
pub fn is_held_out(id: &str, fraction: f64, seed: u64) -> bool {
    if fraction <= 0.0 {
        return false;
    }
    let h = blake3::hash(format!("{seed}:{id}").as_bytes());
    let x = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    (x as f64 / u64::MAX as f64) < fraction
}
