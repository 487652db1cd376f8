//! What things cost: a cart's lines with a coupon's discount, and a checkout's tax and shipping.
//! Pure arithmetic on [`Money`] (integer minor units, one currency); overflow is an error.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cart::CartLine;
use crate::values::{Currency, Money, ValueError};

/// A coupon's effect on the subtotal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Discount {
    /// Percentage off the subtotal, 1..=100, rounded down to the minor unit.
    Percent(u8),
    /// Fixed amount off, capped at the subtotal.
    Fixed(Money),
}

/// Subtotal, discount and total of a set of lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CartTotals {
    pub subtotal: Money,
    pub discount: Money,
    pub total: Money,
}

/// Prices `lines` in `currency` and applies `discount`; the total never goes
/// below zero.
pub fn price_lines(
    currency: Currency,
    lines: &[CartLine],
    discount: Option<&Discount>,
) -> Result<CartTotals, ValueError> {
    let line_totals = lines
        .iter()
        .map(CartLine::line_total)
        .collect::<Result<Vec<_>, _>>()?;
    let subtotal = Money::sum(currency, &line_totals)?;
    let discount = match discount {
        None => Money::zero(currency),
        Some(Discount::Percent(p)) => {
            let off = i128::from(subtotal.amount_minor.max(0)) * i128::from(*p) / 100;
            Money::new(
                i64::try_from(off).map_err(|_| ValueError::Overflow)?,
                currency,
            )
        }
        Some(Discount::Fixed(amount)) => {
            amount.min(&Money::new(subtotal.amount_minor.max(0), currency))?
        }
    };
    let total = subtotal.checked_sub(&discount)?;
    let total = Money::new(total.amount_minor.max(0), currency);
    Ok(CartTotals {
        subtotal,
        discount,
        total,
    })
}

/// VAT in percent for a shipping country (tax is added to the goods after discount).
pub fn vat_percent(country: &str) -> i64 {
    match country {
        "DE" => 19,
        "FR" | "AT" | "GB" => 20,
        "NL" | "ES" | "BE" => 21,
        "IT" => 22,
        "US" | "CA" => 0,
        _ => 20,
    }
}

/// Flat shipping, free from this many minor units of goods after discount.
pub const SHIPPING_MINOR: i64 = 499;
pub const FREE_SHIPPING_FROM_MINOR: i64 = 5_000;

/// Tax and shipping of a checkout: VAT on the goods after discount (rounded half up), flat
/// shipping below the free-shipping threshold.
pub fn tax_and_shipping(
    goods_after_discount: Money,
    country: &str,
) -> Result<(Money, Money), ValueError> {
    let currency = goods_after_discount.currency;
    let goods = goods_after_discount.amount_minor.max(0);
    let tax = goods
        .checked_mul(vat_percent(country))
        .map(|n| (n + 50) / 100)
        .ok_or(ValueError::Overflow)?;
    let shipping = if goods >= FREE_SHIPPING_FROM_MINOR {
        0
    } else {
        SHIPPING_MINOR
    };
    Ok((Money::new(tax, currency), Money::new(shipping, currency)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{eur, qty, sku};

    fn line(code: &str, quantity: u32, unit_minor: i64) -> CartLine {
        CartLine {
            sku: sku(code),
            quantity: qty(quantity),
            unit_price: eur(unit_minor),
        }
    }

    fn totals(subtotal: i64, discount: i64, total: i64) -> CartTotals {
        CartTotals {
            subtotal: eur(subtotal),
            discount: eur(discount),
            total: eur(total),
        }
    }

    #[test]
    fn a_percent_discount_rounds_down_and_a_fixed_one_is_capped_at_the_subtotal() {
        let currency = eur(0).currency;
        let lines = [line("A", 3, 333)];
        // 15% of 999 = 149.85 -> 149
        assert_eq!(
            price_lines(currency, &lines, Some(&Discount::Percent(15))),
            Ok(totals(999, 149, 850))
        );
        assert_eq!(
            price_lines(
                currency,
                &[line("A", 1, 300)],
                Some(&Discount::Fixed(eur(500)))
            ),
            Ok(totals(300, 300, 0))
        );
        assert_eq!(price_lines(currency, &[], None), Ok(totals(0, 0, 0)));
        assert_eq!(
            price_lines(currency, &[line("A", 2, i64::MAX)], None),
            Err(ValueError::Overflow)
        );
    }

    #[test]
    fn tax_is_vat_on_goods_after_discount_and_shipping_is_free_from_fifty() {
        assert_eq!(
            tax_and_shipping(eur(3200), "DE").unwrap(),
            (eur(608), eur(499))
        );
        assert_eq!(
            tax_and_shipping(eur(5000), "FR").unwrap(),
            (eur(1000), eur(0))
        );
        assert_eq!(
            tax_and_shipping(eur(1), "DE").unwrap(),
            (eur(0), eur(499)),
            "0.19 rounds down"
        );
        assert_eq!(
            tax_and_shipping(eur(3), "DE").unwrap(),
            (eur(1), eur(499)),
            "0.57 rounds up"
        );
        assert_eq!(tax_and_shipping(eur(1000), "US").unwrap().0, eur(0));
    }
}
