//! Each tenant's reply templates (fusion's SuggestReplies ranks them): one row per
//! tenant holding its `TenantReplies` as protobuf, replaced whole. The SQL is the same
//! in both dialects.

use anyhow::Context;
use empathy_proto::v1::TenantReplies;
use prost::Message;

use super::FeedbackStore;

pub(super) const SET_REPLIES: &str = "INSERT INTO reply_banks (tenant, bank, updated_unix_ms) \
     VALUES ($1, $2, $3) ON CONFLICT (tenant) DO UPDATE SET bank = excluded.bank, \
     updated_unix_ms = excluded.updated_unix_ms";
pub(super) const CLEAR_REPLIES: &str = "DELETE FROM reply_banks WHERE tenant = $1";
pub(super) const GET_REPLIES: &str = "SELECT bank FROM reply_banks WHERE tenant = $1";

impl FeedbackStore {
    /// Replaces `bank.tenant`'s templates; an empty bank removes the row.
    pub fn put_replies(&self, bank: &TenantReplies) -> anyhow::Result<()> {
        let row =
            (!bank.templates.is_empty()).then(|| (bank.encode_to_vec(), bank.updated_unix_ms));
        self.backend.set_replies(
            &bank.tenant,
            row.as_ref().map(|(b, at)| (b.as_slice(), *at)),
        )
    }

    /// `tenant`'s templates (an empty bank if it has none).
    pub fn replies(&self, tenant: &str) -> anyhow::Result<TenantReplies> {
        match self.backend.replies(tenant)? {
            Some(bytes) => TenantReplies::decode(bytes.as_slice())
                .with_context(|| format!("the reply bank of tenant {tenant}: corrupt")),
            None => Ok(TenantReplies {
                tenant: tenant.to_string(),
                ..Default::default()
            }),
        }
    }
}
