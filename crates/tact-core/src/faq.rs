//! The knowledge base of prepared answers (question, answer, keywords, FAQ page) and the ranking
//! of its entries against what a visitor tried, with BM25 from the `bm25` crate.
//!
//! Pure: the index is built from the entries the edge loaded, and a search is a function of the
//! index and the query. Ties are broken by entry order, so the same session always gets the same
//! answers in the same order (decisions must replay byte for byte).

use crate::decision::SuggestedAnswer;
use bm25::{Language, SearchEngine, SearchEngineBuilder};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;

/// One prepared answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaqEntry {
    pub id: String,
    pub question: String,
    pub answer: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// The site's page for this answer (a `FAQ_VIEW`'s `page`), if it has one.
    #[serde(default)]
    pub page: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaqFile {
    #[serde(default)]
    entry: Vec<FaqEntry>,
}

/// The entries and their index. Cheap to clone (the index is shared).
#[derive(Clone, Default)]
pub struct KnowledgeBase {
    entries: Arc<Vec<FaqEntry>>,
    index: Option<Arc<SearchEngine<u32>>>,
}

impl fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl PartialEq for KnowledgeBase {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl KnowledgeBase {
    /// Indexes `entries` (question, keywords and answer are searched; the question and keywords
    /// count twice, as a good FAQ's wording is in them). A later entry with an id already seen
    /// replaces the earlier one.
    pub fn new(entries: Vec<FaqEntry>) -> KnowledgeBase {
        let mut unique: Vec<FaqEntry> = Vec::with_capacity(entries.len());
        for e in entries {
            match unique.iter_mut().find(|u| u.id == e.id) {
                Some(u) => *u = e,
                None => unique.push(e),
            }
        }
        if unique.is_empty() {
            return KnowledgeBase::default();
        }
        let docs: Vec<bm25::Document<u32>> = unique
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let keywords = e.keywords.join(" ");
                let text = format!(
                    "{q} {k} {q} {k} {a}",
                    q = e.question,
                    k = keywords,
                    a = e.answer
                );
                bm25::Document::new(i as u32, text)
            })
            .collect();
        let index = SearchEngineBuilder::<u32>::with_documents(Language::English, docs).build();
        KnowledgeBase {
            entries: Arc::new(unique),
            index: Some(Arc::new(index)),
        }
    }

    /// Parses a knowledge-base file's text: `[[entry]]` tables with id, question, answer, optional
    /// keywords and page. Every problem at once, each naming its entry.
    pub fn from_toml(text: &str) -> Result<KnowledgeBase, String> {
        let file: FaqFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        for (i, e) in file.entry.iter().enumerate() {
            for (field, value) in [
                ("id", &e.id),
                ("question", &e.question),
                ("answer", &e.answer),
            ] {
                if value.trim().is_empty() {
                    problems.push(format!(
                        "entry {} ({:?}): {field} must not be empty",
                        i + 1,
                        e.id
                    ));
                }
            }
            if file.entry[..i].iter().any(|x| x.id == e.id) {
                problems.push(format!("entry {}: id {:?} appears twice", i + 1, e.id));
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(KnowledgeBase::new(file.entry))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn entries(&self) -> &[FaqEntry] {
        &self.entries
    }

    /// The entry whose FAQ page is `page`.
    pub fn by_page(&self, page: &str) -> Option<&FaqEntry> {
        self.entries
            .iter()
            .find(|e| e.page.as_deref() == Some(page))
    }

    /// The best `max` entries for `query` with a positive score, skipping `exclude` ids, best
    /// first; equal scores keep the knowledge base's order.
    pub fn search(&self, query: &str, max: usize, exclude: &[String]) -> Vec<SuggestedAnswer> {
        let Some(index) = self
            .index
            .as_ref()
            .filter(|_| max > 0 && !query.trim().is_empty())
        else {
            return Vec::new();
        };
        let mut hits: Vec<(u32, f32)> = index
            .search(query, None)
            .into_iter()
            .filter(|r| r.score > 0.0)
            .map(|r| (r.document.id, r.score))
            .collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        hits.into_iter()
            .filter_map(|(i, score)| Some((self.entries.get(i as usize)?, score)))
            .filter(|(e, _)| !exclude.contains(&e.id))
            .take(max)
            .map(|(e, score)| SuggestedAnswer {
                faq_id: e.id.clone(),
                question: e.question.clone(),
                answer: e.answer.clone(),
                page: e.page.clone(),
                // Rounded: the score is informative, and the decision must not depend on the
                // last bits of a float sum.
                score: (score * 1000.0).round() / 1000.0,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, question: &str, keywords: &[&str], page: &str) -> FaqEntry {
        FaqEntry {
            id: id.into(),
            question: question.into(),
            answer: format!("answer to {question}"),
            keywords: keywords.iter().map(|k| k.to_string()).collect(),
            page: Some(page.into()),
        }
    }

    fn kb() -> KnowledgeBase {
        KnowledgeBase::new(vec![
            entry(
                "returns",
                "How do I return an item?",
                &["refund", "send back"],
                "/help/returns",
            ),
            entry(
                "delivery",
                "When will my order arrive?",
                &["shipping", "delivery time"],
                "/help/delivery",
            ),
            entry(
                "sizes",
                "Which size should I choose?",
                &["size chart", "fit"],
                "/help/sizes",
            ),
        ])
    }

    #[test]
    fn the_entry_that_matches_the_query_ranks_first() {
        let answers = kb().search("refund for shoes that do not fit", 3, &[]);
        assert_eq!(answers[0].faq_id, "returns");
        assert!(answers.iter().any(|a| a.faq_id == "sizes"));
        assert!(answers.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn nothing_matching_gives_no_answer_and_excluded_entries_are_skipped() {
        assert!(kb().search("zebra xylophone", 3, &[]).is_empty());
        assert!(kb().search("", 3, &[]).is_empty());
        let answers = kb().search("shipping delivery time", 3, &["delivery".into()]);
        assert!(answers.iter().all(|a| a.faq_id != "delivery"));
        assert!(KnowledgeBase::default().search("refund", 3, &[]).is_empty());
    }

    #[test]
    fn a_knowledge_base_file_reports_every_problem() {
        let kb = KnowledgeBase::from_toml(
            "[[entry]]\nid = \"a\"\nquestion = \"q\"\nanswer = \"x\"\nkeywords = [\"k\"]\npage = \"/help/a\"\n",
        )
        .unwrap();
        assert_eq!(kb.by_page("/help/a").unwrap().keywords, ["k"]);
        let err = KnowledgeBase::from_toml(
            "[[entry]]\nid = \"a\"\nquestion = \"\"\nanswer = \"x\"\n[[entry]]\nid = \"a\"\nquestion = \"q\"\nanswer = \" \"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("entry 1 (\"a\"): question must not be empty"),
            "{err}"
        );
        assert!(err.contains("entry 2: id \"a\" appears twice"), "{err}");
        assert!(
            err.contains("entry 2 (\"a\"): answer must not be empty"),
            "{err}"
        );
        assert!(KnowledgeBase::from_toml("[[entry]]\nid = \"a\"\nprice = 3\n").is_err());
    }

    #[test]
    fn a_later_entry_replaces_one_with_the_same_id() {
        let mut entries = kb().entries().to_vec();
        entries.push(entry(
            "returns",
            "Can I exchange?",
            &["exchange"],
            "/help/x",
        ));
        let kb = KnowledgeBase::new(entries);
        assert_eq!(kb.len(), 3);
        assert_eq!(kb.by_page("/help/x").unwrap().id, "returns");
    }
}
