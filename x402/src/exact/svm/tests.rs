//! One real transaction per rule, built and signed here as a buyer would (legacy and v0
//! messages, Token and Token-2022, lookup tables), refused with its reason; valid ones pass.

use solana_hash::Hash;
use solana_keypair::Keypair;
use solana_message::{
    v0, AccountMeta, AddressLookupTableAccount, Instruction, Message, VersionedMessage,
};
use solana_signature::Signature;
use solana_signer::Signer;

use super::*;

const AMOUNT: u64 = 1_000;

/// A buyer, our fee payer, a payee and a mint; instructions built as `@x402/svm` builds them.
struct Fixture {
    fee_payer: Keypair,
    buyer: Keypair,
    pay_to: Pubkey,
    mint: Pubkey,
    program: Pubkey,
}

impl Fixture {
    fn new() -> Self {
        Self::with_program(svm::TOKEN_PROGRAM)
    }

    fn with_program(program: &str) -> Self {
        Self {
            fee_payer: Keypair::new(),
            buyer: Keypair::new(),
            pay_to: Pubkey::new_unique(),
            mint: Pubkey::new_unique(),
            program: pubkey(program),
        }
    }

    fn ours(&self) -> Vec<Pubkey> {
        vec![self.fee_payer.pubkey(), Pubkey::new_unique()]
    }

    fn limit(units: u32) -> Instruction {
        let mut data = vec![SET_COMPUTE_UNIT_LIMIT];
        data.extend(units.to_le_bytes());
        Instruction::new_with_bytes(pubkey(svm::COMPUTE_BUDGET_PROGRAM), &data, vec![])
    }

    fn price(micro_lamports: u64) -> Instruction {
        let mut data = vec![SET_COMPUTE_UNIT_PRICE];
        data.extend(micro_lamports.to_le_bytes());
        Instruction::new_with_bytes(pubkey(svm::COMPUTE_BUDGET_PROGRAM), &data, vec![])
    }

    fn ata(&self, owner: &Pubkey) -> Pubkey {
        svm::associated_token_address(owner, &self.mint, &self.program)
    }

    fn transfer_from(&self, authority: &Pubkey, destination: Pubkey, amount: u64) -> Instruction {
        let mut data = vec![TRANSFER_CHECKED];
        data.extend(amount.to_le_bytes());
        data.push(6);
        Instruction::new_with_bytes(
            self.program,
            &data,
            vec![
                AccountMeta::new(self.ata(authority), false),
                AccountMeta::new_readonly(self.mint, false),
                AccountMeta::new(destination, false),
                AccountMeta::new_readonly(*authority, true),
            ],
        )
    }

    fn transfer(&self, amount: u64) -> Instruction {
        self.transfer_from(&self.buyer.pubkey(), self.ata(&self.pay_to), amount)
    }

    fn memo(text: &str) -> Instruction {
        Instruction::new_with_bytes(pubkey(svm::MEMO_PROGRAM), text.as_bytes(), vec![])
    }

    fn guard(accounts: Vec<AccountMeta>) -> Instruction {
        Instruction::new_with_bytes(pubkey(svm::LIGHTHOUSE_PROGRAM), &[1, 2], accounts)
    }

    /// The official client's layout: limit 20,000, price 1, TransferChecked, a memo.
    fn official(&self) -> Vec<Instruction> {
        vec![
            Self::limit(20_000),
            Self::price(1),
            self.transfer(AMOUNT),
            Self::memo("0123456789abcdef0123456789abcdef"),
        ]
    }

    /// A v0 message paid by our fee payer, signed by `signers` (the fee payer's slot empty).
    fn v0(
        &self,
        ixs: &[Instruction],
        tables: &[AddressLookupTableAccount],
    ) -> VersionedTransaction {
        let message =
            v0::Message::try_compile(&self.fee_payer.pubkey(), ixs, tables, blockhash()).unwrap();
        sign(VersionedMessage::V0(message), &[&self.buyer])
    }

    fn legacy(&self, ixs: &[Instruction]) -> VersionedTransaction {
        let message =
            Message::new_with_blockhash(ixs, Some(&self.fee_payer.pubkey()), &blockhash());
        sign(VersionedMessage::Legacy(message), &[&self.buyer])
    }

    fn request(&self, tx: &VersionedTransaction) -> SvmRequest {
        SvmRequest {
            pay_to: self.pay_to.to_string(),
            asset: self.mint.to_string(),
            fee_payer: Some(self.fee_payer.pubkey().to_string()),
            memo: None,
            transaction: bincode::serialize(tx).unwrap(),
            amount: Some(AMOUNT),
        }
    }

    /// Decode the request's bytes and run every check, as the facilitator does.
    fn check(&self, req: &SvmRequest, limits: &Limits) -> Result<Verified, Reason> {
        let tx = decode(&req.transaction)?;
        verify(&tx, &LoadedAddresses::default(), req, &self.ours(), limits)
    }

    fn verdict(&self, tx: &VersionedTransaction) -> Result<Verified, Reason> {
        self.check(&self.request(tx), &Limits::default())
    }
}

fn blockhash() -> Hash {
    Hash::new_from_array([7; 32])
}

/// Sign `message` with each of `signers` in its slot; other slots stay empty.
fn sign(message: VersionedMessage, signers: &[&Keypair]) -> VersionedTransaction {
    let bytes = message.serialize();
    let n = message.header().num_required_signatures as usize;
    let mut signatures = vec![Signature::default(); n];
    for kp in signers {
        // A keypair the message does not ask for (its instruction was replaced) signs nothing.
        if let Some(slot) = message.static_account_keys()[..n]
            .iter()
            .position(|k| *k == kp.pubkey())
        {
            signatures[slot] = kp.sign_message(&bytes);
        }
    }
    VersionedTransaction {
        signatures,
        message,
    }
}

#[test]
fn the_official_layout_passes_as_v0_and_legacy_with_token_and_token_2022() {
    for program in [svm::TOKEN_PROGRAM, svm::TOKEN_2022_PROGRAM] {
        let f = Fixture::with_program(program);
        for tx in [f.v0(&f.official(), &[]), f.legacy(&f.official())] {
            let ok = f.verdict(&tx).unwrap();
            assert_eq!(ok.payer, f.buyer.pubkey());
            assert_eq!(ok.fee_payer, f.fee_payer.pubkey());
            assert_eq!(ok.amount, AMOUNT);
            assert_eq!(ok.destination, f.ata(&f.pay_to));
            assert_eq!(ok.token_program, f.program);
            assert_eq!((ok.compute_unit_limit, ok.compute_unit_price), (20_000, 1));
            assert_eq!(ok.fee_lamports, 10_001);
        }
        // The three required instructions alone, and with guards around a memo.
        let f3 = f.v0(
            &[
                Fixture::limit(20_000),
                Fixture::price(1),
                f.transfer(AMOUNT),
            ],
            &[],
        );
        f.verdict(&f3).unwrap();
        let guarded = [
            Fixture::limit(20_000),
            Fixture::price(1),
            f.transfer(AMOUNT),
            Fixture::guard(vec![]),
            Fixture::guard(vec![]),
            Fixture::memo("x"),
        ];
        f.verdict(&f.v0(&guarded, &[])).unwrap();
    }
}

#[test]
fn a_copy_signed_again_is_the_same_payment() {
    let f = Fixture::new();
    let tx = f.v0(&f.official(), &[]);
    let ok = f.verdict(&tx).unwrap();
    let signed = with_fee_payer_signature(&tx, f.fee_payer.sign_message(&tx.message.serialize()));
    assert_eq!(message_hash(&signed), ok.message_hash);
    assert!(signed.verify_and_hash_message().is_ok());
    // Another memo (the client's random one) is another payment.
    let mut other = f.official();
    other[3] = Fixture::memo("another");
    assert_ne!(
        f.verdict(&f.v0(&other, &[])).unwrap().message_hash,
        ok.message_hash
    );
}

#[test]
fn bytes_that_are_no_transaction_are_not_decoded() {
    let f = Fixture::new();
    let good = f.request(&f.v0(&f.official(), &[]));
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        b"not a transaction".to_vec(),
        good.transaction[..good.transaction.len() - 3].to_vec(),
        [good.transaction.clone(), vec![0]].concat(),
        vec![1; 2000],
    ];
    for bytes in cases {
        let req = SvmRequest {
            transaction: bytes,
            ..good.clone()
        };
        assert_eq!(
            f.check(&req, &Limits::default()).unwrap_err(),
            Reason::InvalidExactSvmPayloadTransactionCouldNotBeDecoded
        );
    }
}

#[test]
fn the_fee_payer_must_be_named_ours_and_pay() {
    let f = Fixture::new();
    let tx = f.v0(&f.official(), &[]);
    let mut req = f.request(&tx);
    req.fee_payer = None;
    assert_eq!(
        f.check(&req, &Limits::default()).unwrap_err(),
        Reason::InvalidExactSvmPayloadMissingFeePayer
    );
    req.fee_payer = Some(Pubkey::new_unique().to_string());
    assert_eq!(
        f.check(&req, &Limits::default()).unwrap_err(),
        Reason::FeePayerNotManagedByFacilitator
    );
    req.fee_payer = Some("not base58 at all!".into());
    assert_eq!(
        f.check(&req, &Limits::default()).unwrap_err(),
        Reason::FeePayerNotManagedByFacilitator
    );
    // Named ours, but the transaction's fee account is the buyer.
    let message = v0::Message::try_compile(&f.buyer.pubkey(), &f.official(), &[], blockhash());
    let buyer_pays = sign(VersionedMessage::V0(message.unwrap()), &[&f.buyer]);
    assert_eq!(
        f.verdict(&buyer_pays).unwrap_err(),
        Reason::FeePayerNotManagedByFacilitator
    );
}

#[test]
fn three_to_six_instructions() {
    let f = Fixture::new();
    let two = [Fixture::limit(20_000), f.transfer(AMOUNT)];
    let mut seven = f.official();
    seven.extend([
        Fixture::guard(vec![]),
        Fixture::guard(vec![]),
        Fixture::memo("b"),
    ]);
    for ixs in [&two[..], &seven[..]] {
        assert_eq!(
            f.verdict(&f.v0(ixs, &[])).unwrap_err(),
            Reason::InvalidExactSvmPayloadTransactionInstructionsLength
        );
    }
}

#[test]
fn compute_budget_instructions_in_place_and_under_the_caps() {
    let f = Fixture::new();
    let with = |a: Instruction, b: Instruction| {
        let mut ixs = f.official();
        ixs[0] = a;
        ixs[1] = b;
        f.verdict(&f.v0(&ixs, &[]))
    };
    assert_eq!(
        with(Fixture::price(1), Fixture::limit(20_000)).unwrap_err(),
        Reason::InvalidExactSvmPayloadComputeLimitInstruction
    );
    assert_eq!(
        with(Fixture::memo("x"), Fixture::price(1)).unwrap_err(),
        Reason::InvalidExactSvmPayloadComputeLimitInstruction
    );
    assert_eq!(
        with(Fixture::limit(20_000), Fixture::limit(20_000)).unwrap_err(),
        Reason::InvalidExactSvmPayloadComputePriceInstruction
    );
    // A truncated price (3 bytes of a u64).
    let short = Instruction::new_with_bytes(
        pubkey(svm::COMPUTE_BUDGET_PROGRAM),
        &[SET_COMPUTE_UNIT_PRICE, 1, 0, 0],
        vec![],
    );
    assert_eq!(
        with(Fixture::limit(20_000), short).unwrap_err(),
        Reason::InvalidExactSvmPayloadComputePriceInstruction
    );
    assert_eq!(
        with(
            Fixture::limit(20_000),
            Fixture::price(MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS + 1)
        )
        .unwrap_err(),
        Reason::InvalidExactSvmPayloadComputePriceTooHigh
    );
    with(
        Fixture::limit(1_000),
        Fixture::price(MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS),
    )
    .unwrap();
    assert_eq!(
        with(
            Fixture::limit(DEFAULT_MAX_COMPUTE_UNIT_LIMIT + 1),
            Fixture::price(1)
        )
        .unwrap_err(),
        Reason::InvalidExactSvmPayloadComputeLimitTooHigh
    );
    // An operator's lower price cap.
    let tx = f.v0(&f.official(), &[]);
    let limits = Limits {
        max_compute_unit_price: 0,
        ..Limits::default()
    };
    assert_eq!(
        f.check(&f.request(&tx), &limits).unwrap_err(),
        Reason::InvalidExactSvmPayloadComputePriceTooHigh
    );
}

#[test]
fn the_third_instruction_is_a_transfer_checked_of_a_token_program() {
    let f = Fixture::new();
    let with = |ix: Instruction| {
        let mut ixs = f.official();
        ixs[2] = ix;
        f.verdict(&f.v0(&ixs, &[]))
    };
    // A plain Transfer (tag 3), not TransferChecked.
    let mut plain = f.transfer(AMOUNT);
    plain.data = [vec![3], AMOUNT.to_le_bytes().to_vec()].concat();
    // The same bytes under another program.
    let mut elsewhere = f.transfer(AMOUNT);
    elsewhere.program_id = Pubkey::new_unique();
    // Too few accounts.
    let mut short = f.transfer(AMOUNT);
    short.accounts.truncate(3);
    for ix in [plain, elsewhere, short, Fixture::memo("x")] {
        assert_eq!(
            with(ix).unwrap_err(),
            Reason::InvalidExactSvmPayloadNoTransferInstruction
        );
    }
}

#[test]
fn our_fee_payer_moves_no_funds_and_appears_in_no_instruction() {
    let f = Fixture::new();
    // The fee payer as the transfer's authority (its own token account as source).
    let fee_payer = f.fee_payer.pubkey();
    let mut ixs = f.official();
    ixs[2] = f.transfer_from(&fee_payer, f.ata(&f.pay_to), AMOUNT);
    let message = v0::Message::try_compile(&fee_payer, &ixs, &[], blockhash()).unwrap();
    let tx = sign(VersionedMessage::V0(message), &[]);
    assert_eq!(
        f.verdict(&tx).unwrap_err(),
        Reason::InvalidExactSvmPayloadFeePayerTransferringFunds
    );
    // Another of our fee payers as the authority.
    let other = Keypair::new();
    let ours = vec![fee_payer, other.pubkey()];
    let mut ixs = f.official();
    ixs[2] = f.transfer_from(&other.pubkey(), f.ata(&f.pay_to), AMOUNT);
    let message = v0::Message::try_compile(&fee_payer, &ixs, &[], blockhash()).unwrap();
    let tx = sign(VersionedMessage::V0(message), &[&other]);
    let req = f.request(&tx);
    assert_eq!(
        verify(
            &tx,
            &LoadedAddresses::default(),
            &req,
            &ours,
            &Limits::default()
        )
        .unwrap_err(),
        Reason::InvalidExactSvmPayloadFeePayerTransferringFunds
    );
    // The fee payer in a guard instruction's accounts.
    let mut ixs = f.official();
    ixs.push(Fixture::guard(vec![AccountMeta::new(fee_payer, false)]));
    assert_eq!(
        f.verdict(&f.v0(&ixs, &[])).unwrap_err(),
        Reason::InvalidExactSvmPayloadFeePayerTransferringFunds
    );
}

#[test]
fn mint_destination_and_amount_are_the_requirements() {
    let f = Fixture::new();
    let tx = f.v0(&f.official(), &[]);
    let mut req = f.request(&tx);
    req.asset = Pubkey::new_unique().to_string();
    assert_eq!(
        f.check(&req, &Limits::default()).unwrap_err(),
        Reason::InvalidExactSvmPayloadMintMismatch
    );
    // Paid to the buyer's own token account, to payTo itself (not its ATA), and to payTo's
    // ATA under the other token program.
    let other_program =
        svm::associated_token_address(&f.pay_to, &f.mint, &pubkey(svm::TOKEN_2022_PROGRAM));
    for destination in [f.ata(&f.buyer.pubkey()), f.pay_to, other_program] {
        let mut ixs = f.official();
        ixs[2] = f.transfer_from(&f.buyer.pubkey(), destination, AMOUNT);
        assert_eq!(
            f.verdict(&f.v0(&ixs, &[])).unwrap_err(),
            Reason::InvalidExactSvmPayloadRecipientMismatch
        );
    }
    for amount in [AMOUNT - 1, AMOUNT + 1] {
        let mut ixs = f.official();
        ixs[2] = f.transfer(amount);
        assert_eq!(
            f.verdict(&f.v0(&ixs, &[])).unwrap_err(),
            Reason::InvalidExactSvmPayloadAmountMismatch
        );
    }
    // A requirement beyond u64 matches no transfer.
    let mut req = f.request(&tx);
    req.amount = None;
    assert_eq!(
        f.check(&req, &Limits::default()).unwrap_err(),
        Reason::InvalidExactSvmPayloadAmountMismatch
    );
}

#[test]
fn no_payment_worth_nothing() {
    let f = Fixture::new();
    // 0 asked and 0 sent.
    let mut ixs = f.official();
    ixs[2] = f.transfer(0);
    let tx = f.v0(&ixs, &[]);
    let mut req = f.request(&tx);
    req.amount = Some(0);
    assert_eq!(
        f.check(&req, &Limits::default()).unwrap_err(),
        Reason::InvalidExactSvmPayloadAmountMismatch
    );
    // Below the asset's floor.
    let tx = f.v0(&f.official(), &[]);
    let floor = Limits {
        min_amount: AMOUNT + 1,
        ..Limits::default()
    };
    assert_eq!(
        f.check(&f.request(&tx), &floor).unwrap_err(),
        Reason::InvalidExactSvmPayloadAmountMismatch
    );
    // The buyer paying itself.
    let mut self_pay = Fixture::new();
    self_pay.pay_to = self_pay.buyer.pubkey();
    let mut ixs = self_pay.official();
    ixs[2] = self_pay.transfer(AMOUNT);
    assert_eq!(
        self_pay.verdict(&self_pay.v0(&ixs, &[])).unwrap_err(),
        Reason::InvalidExactSvmPayloadAmountMismatch
    );
}

#[test]
fn optional_instructions_are_memo_or_lighthouse_only() {
    let f = Fixture::new();
    let stranger = Instruction::new_with_bytes(Pubkey::new_unique(), &[1], vec![]);
    let expected = [
        Reason::InvalidExactSvmPayloadUnknownFourthInstruction,
        Reason::InvalidExactSvmPayloadUnknownFifthInstruction,
        Reason::InvalidExactSvmPayloadUnknownSixthInstruction,
    ];
    for (at, reason) in expected.into_iter().enumerate() {
        let mut ixs = vec![
            Fixture::limit(20_000),
            Fixture::price(1),
            f.transfer(AMOUNT),
        ];
        ixs.extend(std::iter::repeat_n(Fixture::memo("m"), at));
        ixs.push(stranger.clone());
        assert_eq!(f.verdict(&f.v0(&ixs, &[])).unwrap_err(), reason);
    }
}

#[test]
fn a_memo_asked_for_is_there_once_and_equal() {
    let f = Fixture::new();
    let memo = "0123456789abcdef0123456789abcdef";
    let tx = f.v0(&f.official(), &[]);
    let mut req = f.request(&tx);
    req.memo = Some(memo.into());
    f.check(&req, &Limits::default()).unwrap();
    req.memo = Some("order-42".into());
    assert_eq!(
        f.check(&req, &Limits::default()).unwrap_err(),
        Reason::InvalidExactSvmPayloadMemoMismatch
    );
    let mut two = f.official();
    two.push(Fixture::memo(memo));
    let mut none = f.official();
    none.pop();
    for ixs in [two, none] {
        let tx = f.v0(&ixs, &[]);
        let mut req = f.request(&tx);
        req.memo = Some(memo.into());
        assert_eq!(
            f.check(&req, &Limits::default()).unwrap_err(),
            Reason::InvalidExactSvmPayloadMemoCount
        );
    }
}

#[test]
fn only_the_buyer_and_the_fee_payer_sign() {
    let f = Fixture::new();
    // A third signer, required by a guard instruction.
    let third = Keypair::new();
    let mut ixs = f.official();
    ixs.push(Fixture::guard(vec![AccountMeta::new_readonly(
        third.pubkey(),
        true,
    )]));
    let message = v0::Message::try_compile(&f.fee_payer.pubkey(), &ixs, &[], blockhash());
    let tx = sign(VersionedMessage::V0(message.unwrap()), &[&f.buyer, &third]);
    assert_eq!(
        f.verdict(&tx).unwrap_err(),
        Reason::InvalidExactSvmPayloadExcessiveSigners
    );
    // The buyer's slot unsigned, or signed over another message.
    let unsigned = {
        let message =
            v0::Message::try_compile(&f.fee_payer.pubkey(), &f.official(), &[], blockhash());
        sign(VersionedMessage::V0(message.unwrap()), &[])
    };
    let mut forged = f.v0(&f.official(), &[]);
    forged.signatures[1] = f.buyer.sign_message(b"something else");
    for tx in [unsigned, forged] {
        assert_eq!(
            f.verdict(&tx).unwrap_err(),
            Reason::InvalidExactSvmPayloadSignatureInvalid
        );
    }
}

#[test]
fn the_fee_is_bounded_in_lamports() {
    let f = Fixture::new();
    let mut ixs = f.official();
    ixs[0] = Fixture::limit(100_000);
    ixs[1] = Fixture::price(1_000_000);
    let tx = f.v0(&ixs, &[]);
    // 2 signatures + 100,000 CU × 1 lamport.
    assert_eq!(f.verdict(&tx).unwrap().fee_lamports, 110_000);
    let tight = Limits {
        max_lamports_per_settlement: 109_999,
        ..Limits::default()
    };
    assert_eq!(
        f.check(&f.request(&tx), &tight).unwrap_err(),
        Reason::InvalidExactSvmPayloadFeeTooHigh
    );
}

#[test]
fn lookup_tables_are_resolved_or_refused() {
    let f = Fixture::new();
    let table_key = Pubkey::new_unique();
    let destination = f.ata(&f.pay_to);
    let table = AddressLookupTableAccount {
        key: table_key,
        addresses: vec![Pubkey::new_unique(), destination, f.mint],
    };
    let tx = f.v0(&f.official(), std::slice::from_ref(&table));
    assert_eq!(tx.message.address_table_lookups().unwrap().len(), 1);
    let data = |addresses: &[Pubkey]| {
        let mut d = vec![0u8; 56];
        for a in addresses {
            d.extend_from_slice(a.as_ref());
        }
        d
    };
    let req = f.request(&tx);
    let ours = f.ours();
    let limits = Limits::default();
    // Resolved from the table's account: valid.
    let loaded = resolve_lookups(&tx, &[Some(data(&table.addresses))]).unwrap();
    assert!(loaded.writable.contains(&destination));
    verify(&tx, &loaded, &req, &ours, &limits).unwrap();
    // Not resolved, the table missing, or shorter than the indexes: refused.
    let undecodable = Reason::InvalidExactSvmPayloadTransactionCouldNotBeDecoded;
    assert_eq!(
        verify(&tx, &LoadedAddresses::default(), &req, &ours, &limits).unwrap_err(),
        undecodable
    );
    assert_eq!(resolve_lookups(&tx, &[None]).unwrap_err(), undecodable);
    assert_eq!(
        resolve_lookups(&tx, &[Some(data(&table.addresses[..1]))]).unwrap_err(),
        undecodable
    );
    assert_eq!(resolve_lookups(&tx, &[]).unwrap_err(), undecodable);
    // A table that, at settle time, holds our fee payer where the destination was.
    let swapped = [table.addresses[0], ours[0], f.mint];
    let loaded = resolve_lookups(&tx, &[Some(data(&swapped))]).unwrap();
    assert_eq!(
        verify(&tx, &loaded, &req, &ours, &limits).unwrap_err(),
        Reason::InvalidExactSvmPayloadFeePayerTransferringFunds
    );
}
