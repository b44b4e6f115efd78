//! Writes of many ledger rows at once: a batch transaction's mined outcome is the same for
//! every payment it carried (one status, block, gas and fee share), so the group writer
//! (`group.rs`) records it for all of them in one `UPDATE … WHERE id IN (…) RETURNING id`
//! instead of one per payment. The ids go in lists of one of two fixed sizes, padded with an
//! id no row has, so that the statement has one of two shapes whatever the batch's size (a
//! prepared statement is cached per connection and per shape).

use alloy::primitives::B256;
use entities::settlement::Column;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, QueryFilter, QueryTrait};

use super::{mined_events, mined_update, Mined, Status};
use crate::webhooks;

/// The two list sizes.
const SMALL: usize = 8;
const LARGE: usize = 64;
/// An id no row has (ids start at 1).
const NO_ROW: i64 = -1;

/// `ids` in lists of `SMALL` or `LARGE` ids, padded with `NO_ROW`.
pub(crate) fn id_lists(ids: &[i64]) -> Vec<Vec<i64>> {
    ids.chunks(LARGE)
        .map(|c| {
            let mut list = c.to_vec();
            list.resize(if c.len() <= SMALL { SMALL } else { LARGE }, NO_ROW);
            list
        })
        .collect()
}

/// `mark_mined` of every row of `ids` with one outcome (the rows a batch transaction carried
/// alike): the ids that this call moved, each once. Their webhook events are written as
/// `mark_mined` writes them, in the caller's transaction.
pub async fn mark_mined_many(
    db: &impl ConnectionTrait,
    ids: &[i64],
    tx_hash: B256,
    mined: &Mined,
    reason_if_failed: &str,
) -> Result<Vec<i64>, DbErr> {
    let backend = db.get_database_backend();
    let mut moved = Vec::with_capacity(ids.len());
    for list in id_lists(ids) {
        let mut update = mined_update(tx_hash, mined, reason_if_failed)
            .filter(Column::Id.is_in(list))
            .filter(Column::Status.is_in([Status::Pending, Status::Submitted]))
            .into_query();
        update.returning_col(Column::Id);
        for row in db.query_all(backend.build(&update)).await? {
            moved.push(row.try_get::<i64>("", "id")?);
        }
    }
    if !moved.is_empty() {
        webhooks::settlement_events(db, &moved, mined_events(mined)).await?;
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_go_in_lists_of_two_sizes() {
        let sizes = |n: i64| -> Vec<usize> {
            id_lists(&(1..=n).collect::<Vec<_>>())
                .iter()
                .map(Vec::len)
                .collect()
        };
        assert_eq!(sizes(1), vec![SMALL]);
        assert_eq!(sizes(8), vec![SMALL]);
        assert_eq!(sizes(9), vec![LARGE]);
        assert_eq!(sizes(100), vec![LARGE, LARGE]);
        assert_eq!(sizes(129), vec![LARGE, LARGE, SMALL]);
        let lists = id_lists(&[5, 6, 7]);
        assert_eq!(lists[0][..3], [5, 6, 7]);
        assert!(lists[0][3..].iter().all(|&id| id == NO_ROW));
    }
}
