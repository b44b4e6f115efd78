//! The instructions the cluster's set-up and the payment builder use, hand-encoded: each is a
//! few bytes, not worth a crate per program.

use super::*;

/// ComputeBudget `SetComputeUnitLimit` (discriminator 2, u32 LE).
pub fn set_compute_unit_limit(units: u32) -> Instruction {
    let mut data = vec![2u8];
    data.extend_from_slice(&units.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM, &data, vec![])
}

/// ComputeBudget `SetComputeUnitPrice` (discriminator 3, u64 LE micro-lamports).
pub fn set_compute_unit_price(micro_lamports: u64) -> Instruction {
    let mut data = vec![3u8];
    data.extend_from_slice(&micro_lamports.to_le_bytes());
    Instruction::new_with_bytes(COMPUTE_BUDGET_PROGRAM, &data, vec![])
}

/// A token instruction's data `[tag, amount (u64 LE), decimals]` (the `*Checked` ones).
fn checked_data(tag: u8, amount: u64, decimals: u8) -> Vec<u8> {
    let mut data = vec![tag];
    data.extend_from_slice(&amount.to_le_bytes());
    data.push(decimals);
    data
}

/// SPL Token / Token-2022 `TransferChecked` (tag 12, u64 LE amount, u8 decimals).
pub fn transfer_checked(
    token_program: Pubkey,
    source: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    authority: Pubkey,
    amount: u64,
    decimals: u8,
) -> Instruction {
    Instruction::new_with_bytes(
        token_program,
        &checked_data(12, amount, decimals),
        vec![
            AccountMeta::new(source, false),
            AccountMeta::new_readonly(mint, false),
            AccountMeta::new(destination, false),
            AccountMeta::new_readonly(authority, true),
        ],
    )
}

/// A memo with no signer accounts (as the official client sends it).
pub fn memo(data: &[u8]) -> Instruction {
    Instruction::new_with_bytes(MEMO_PROGRAM, data, vec![])
}

/// System `CreateAccount` (index 0).
pub fn create_account(
    from: Pubkey,
    to: Pubkey,
    lamports: u64,
    space: u64,
    owner: Pubkey,
) -> Instruction {
    let mut data = 0u32.to_le_bytes().to_vec();
    data.extend_from_slice(&lamports.to_le_bytes());
    data.extend_from_slice(&space.to_le_bytes());
    data.extend_from_slice(owner.as_ref());
    Instruction::new_with_bytes(
        SYSTEM_PROGRAM,
        &data,
        vec![AccountMeta::new(from, true), AccountMeta::new(to, true)],
    )
}

/// System `Transfer` (index 2) of lamports.
pub fn system_transfer(from: Pubkey, to: Pubkey, lamports: u64) -> Instruction {
    let mut data = 2u32.to_le_bytes().to_vec();
    data.extend_from_slice(&lamports.to_le_bytes());
    Instruction::new_with_bytes(
        SYSTEM_PROGRAM,
        &data,
        vec![AccountMeta::new(from, true), AccountMeta::new(to, false)],
    )
}

/// Token `InitializeMint2` (tag 20): no freeze authority.
pub fn initialize_mint2(
    token_program: Pubkey,
    mint: Pubkey,
    authority: Pubkey,
    decimals: u8,
) -> Instruction {
    let mut data = vec![20u8, decimals];
    data.extend_from_slice(authority.as_ref());
    data.push(0); // freeze authority: None
    Instruction::new_with_bytes(token_program, &data, vec![AccountMeta::new(mint, false)])
}

/// Token `MintToChecked` (tag 14).
pub fn mint_to_checked(
    token_program: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    authority: Pubkey,
    amount: u64,
    decimals: u8,
) -> Instruction {
    Instruction::new_with_bytes(
        token_program,
        &checked_data(14, amount, decimals),
        vec![
            AccountMeta::new(mint, false),
            AccountMeta::new(destination, false),
            AccountMeta::new_readonly(authority, true),
        ],
    )
}

/// The associated token account of `owner` for `mint` under `token_program`: the verifier's
/// own derivation.
pub use x402::svm::associated_token_address;

/// Associated-token-account `CreateIdempotent` (data `[1]`), paid by `payer`.
pub fn create_associated_token_account_idempotent(
    payer: Pubkey,
    owner: Pubkey,
    mint: Pubkey,
    token_program: Pubkey,
) -> Instruction {
    Instruction::new_with_bytes(
        ASSOCIATED_TOKEN_PROGRAM,
        &[1],
        vec![
            AccountMeta::new(payer, true),
            AccountMeta::new(
                associated_token_address(&owner, &mint, &token_program),
                false,
            ),
            AccountMeta::new_readonly(owner, false),
            AccountMeta::new_readonly(mint, false),
            AccountMeta::new_readonly(SYSTEM_PROGRAM, false),
            AccountMeta::new_readonly(token_program, false),
        ],
    )
}
