//! Turns a [`SearchRequest`] into a tantivy query: every query term must match (AND), each as an
//! exact term (boosted) or a fuzzy one, on name, category and description; filters add constant
//! zero-score clauses so they never change the ranking.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, FuzzyTermQuery, Occur, Query, RangeQuery,
    TermQuery,
};
use tantivy::schema::{IndexRecordOption, Term};
use tantivy::tokenizer::TokenStream;

use super::request::{InvalidSearchRequest, SearchRequest, MAX_QUERY_TERMS};
use super::schema::{text_analyzer, ProductFields};

/// How much more an exact term counts than a fuzzy match of the same field.
const EXACT_BOOST: f32 = 2.0;

/// A built query and whether it has text (so relevance scores mean something).
pub(crate) struct BuiltQuery {
    pub query: Box<dyn Query>,
    pub has_text: bool,
}

/// Edit distance allowed for a term of `chars` characters: none below 4, 1 up to 7, 2 from 8.
pub(crate) fn fuzzy_distance(chars: usize) -> u8 {
    match chars {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// The distinct terms of `text`, analyzed like the indexed text.
pub(crate) fn query_terms(text: &str) -> Result<Vec<String>, InvalidSearchRequest> {
    let mut analyzer = text_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut terms: Vec<String> = Vec::new();
    while stream.advance() {
        let term = &stream.token().text;
        if !terms.iter().any(|seen| seen == term) {
            terms.push(term.clone());
        }
    }
    if terms.len() > MAX_QUERY_TERMS {
        return Err(InvalidSearchRequest::TooManyTerms { got: terms.len() });
    }
    Ok(terms)
}

fn term_clause(fields: &ProductFields, term: &str) -> Box<dyn Query> {
    let distance = fuzzy_distance(term.chars().count());
    let mut alternatives: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (field, boost) in fields.text_fields() {
        let indexed_term = Term::from_field_text(field, term);
        let exact = TermQuery::new(indexed_term.clone(), IndexRecordOption::WithFreqs);
        alternatives.push((
            Occur::Should,
            Box::new(BoostQuery::new(Box::new(exact), boost * EXACT_BOOST)),
        ));
        if distance > 0 {
            let fuzzy = FuzzyTermQuery::new(indexed_term, distance, true);
            alternatives.push((
                Occur::Should,
                Box::new(BoostQuery::new(Box::new(fuzzy), boost)),
            ));
        }
    }
    Box::new(BooleanQuery::new(alternatives))
}

fn filter(query: impl Query) -> (Occur, Box<dyn Query>) {
    (
        Occur::Must,
        Box::new(ConstScoreQuery::new(Box::new(query), 0.0)),
    )
}

/// The query for a validated request.
pub(crate) fn build_query(
    fields: &ProductFields,
    request: &SearchRequest,
) -> Result<BuiltQuery, InvalidSearchRequest> {
    let terms = match &request.text {
        Some(text) => query_terms(text)?,
        None => Vec::new(),
    };
    let has_text = !terms.is_empty();
    let mut clauses: Vec<(Occur, Box<dyn Query>)> = terms
        .iter()
        .map(|term| (Occur::Must, term_clause(fields, term)))
        .collect();

    if let Some(category) = &request.category {
        clauses.push(filter(TermQuery::new(
            Term::from_field_text(fields.category, category),
            IndexRecordOption::Basic,
        )));
    }
    if request.price_min.is_some() || request.price_max.is_some() {
        let bound = |value: Option<i64>| match value {
            Some(price) => Bound::Included(Term::from_field_i64(fields.price_minor, price)),
            None => Bound::Unbounded,
        };
        clauses.push(filter(RangeQuery::new(
            bound(request.price_min),
            bound(request.price_max),
        )));
    }
    if let Some(in_stock) = request.in_stock {
        clauses.push(filter(TermQuery::new(
            Term::from_field_bool(fields.in_stock, in_stock),
            IndexRecordOption::Basic,
        )));
    }

    let query: Box<dyn Query> = if clauses.is_empty() {
        Box::new(AllQuery)
    } else {
        Box::new(BooleanQuery::new(clauses))
    };
    Ok(BuiltQuery { query, has_text })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_grows_with_term_length() {
        assert_eq!(fuzzy_distance(3), 0);
        assert_eq!(fuzzy_distance(4), 1);
        assert_eq!(fuzzy_distance(7), 1);
        assert_eq!(fuzzy_distance(8), 2);
    }

    #[test]
    fn terms_are_lowercased_folded_and_distinct() {
        assert_eq!(
            query_terms("Café  CAFE, mug!").ok(),
            Some(vec!["cafe".to_owned(), "mug".to_owned()])
        );
        assert_eq!(query_terms(" -- ").ok(), Some(Vec::new()));
    }

    #[test]
    fn too_many_terms_are_refused() {
        let text = (0..=MAX_QUERY_TERMS)
            .map(|n| format!("w{n}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(
            query_terms(&text).err(),
            Some(InvalidSearchRequest::TooManyTerms {
                got: MAX_QUERY_TERMS + 1
            })
        );
    }
}
