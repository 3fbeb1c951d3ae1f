//! The product catalog the core needs: which products exist in which category and what each is
//! compatible with. Loaded at the edge (a file) and passed in; the core never reads it itself.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: String,
    pub category: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Product ids this product fits (an accessory lists what it is an accessory of).
    #[serde(default)]
    pub compatible_with: Vec<String>,
}

/// Products by id and by category, in file order within a category.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    products: BTreeMap<String, Product>,
    by_category: BTreeMap<String, Vec<String>>,
}

impl Catalog {
    /// Builds the indexes; a duplicate id is an error naming it.
    pub fn new(products: Vec<Product>) -> Result<Catalog, String> {
        let mut catalog = Catalog::default();
        for p in products {
            if catalog.products.contains_key(&p.id) {
                return Err(format!("product {:?} is listed twice", p.id));
            }
            catalog
                .by_category
                .entry(p.category.clone())
                .or_default()
                .push(p.id.clone());
            catalog.products.insert(p.id.clone(), p);
        }
        Ok(catalog)
    }

    pub fn get(&self, id: &str) -> Option<&Product> {
        self.products.get(id)
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// Products of `category`, in catalog order.
    pub fn in_category<'a>(&'a self, category: &str) -> impl Iterator<Item = &'a Product> + 'a {
        self.by_category
            .get(category)
            .into_iter()
            .flatten()
            .filter_map(|id| self.products.get(id))
    }

    /// Products of `category` that fit `owned`.
    pub fn compatible_in<'a>(
        &'a self,
        category: &str,
        owned: &'a str,
    ) -> impl Iterator<Item = &'a Product> + 'a {
        self.in_category(category)
            .filter(move |p| p.compatible_with.iter().any(|c| c == owned))
    }
}
