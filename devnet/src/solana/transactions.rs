//! Transactions: compiling, partial signing, the wire form, and the payment transaction of the
//! official `@x402/svm` client ([`PaymentBuilder`]).

use super::*;

/// Compile `instructions` into a v0 message (with `lookup_tables`) or a legacy one.
pub fn compile_message(
    fee_payer: &Pubkey,
    instructions: &[Instruction],
    blockhash: Hash,
    legacy: bool,
    lookup_tables: &[AddressLookupTableAccount],
) -> Result<VersionedMessage, SolanaError> {
    if legacy {
        Ok(VersionedMessage::Legacy(
            solana_message::legacy::Message::new_with_blockhash(
                instructions,
                Some(fee_payer),
                &blockhash,
            ),
        ))
    } else {
        solana_message::v0::Message::try_compile(fee_payer, instructions, lookup_tables, blockhash)
            .map(VersionedMessage::V0)
            .map_err(other)
    }
}

/// An unsigned transaction of `message` (every required signature zero), signed by those of
/// `signers` the message requires; the others are ignored. Partial signing, as a buyer does.
pub fn sign_partial(message: VersionedMessage, signers: &[&Keypair]) -> VersionedTransaction {
    let mut tx = VersionedTransaction {
        signatures: vec![
            Signature::default();
            usize::from(message.header().num_required_signatures)
        ],
        message,
    };
    add_signatures(&mut tx, signers);
    tx
}

/// Sign `tx`'s message with each of `signers` the message requires (the facilitator's
/// co-sign is `add_signatures(&mut tx, &[&fee_payer])`).
pub fn add_signatures(tx: &mut VersionedTransaction, signers: &[&Keypair]) {
    let bytes = tx.message.serialize();
    let required = usize::from(tx.message.header().num_required_signatures);
    let keys = tx.message.static_account_keys();
    for signer in signers {
        if let Some(i) = keys
            .iter()
            .take(required)
            .position(|k| *k == signer.pubkey())
        {
            tx.signatures[i] = signer.sign_message(&bytes);
        }
    }
}

/// The wire form: bincode of the transaction, base64 (the `payload.transaction` of x402).
pub fn encode_transaction(tx: &VersionedTransaction) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bincode::serialize(tx).expect("a transaction serializes"))
}

pub fn decode_transaction(b64: &str) -> Result<VersionedTransaction, SolanaError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(other)?;
    bincode::deserialize(&bytes).map_err(other)
}

/// A USDC-like mint on the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mint {
    pub address: Pubkey,
    pub token_program: Pubkey,
    pub decimals: u8,
}

impl Mint {
    /// `owner`'s associated token account for this mint.
    pub fn ata(&self, owner: &Pubkey) -> Pubkey {
        associated_token_address(owner, &self.address, &self.token_program)
    }
}

/// The payment transaction of the official `@x402/svm` 2.27 client (`ExactSvmScheme`'s
/// `createPaymentPayload`), field by field, so a test can change one thing and get a refused
/// variant. [`PaymentBuilder::new`] gives exactly the official transaction:
/// v0, `[SetComputeUnitLimit 20000, SetComputeUnitPrice 1, TransferChecked(buyer's ATA ->
/// payTo's ATA, authority buyer), Memo(32 hex chars of 16 random bytes)]`, fee payer the
/// facilitator's key, signed by the buyer only.
///
/// Knobs: every field is public (`amount`, `mint`, `destination`, `authority`, `source`,
/// `compute_unit_price`, `legacy`, `lookup_tables`, ...); `before_transfer` / `extra` add
/// instructions; [`PaymentBuilder::instructions`] + [`PaymentBuilder::build_with`] allow any
/// reordering or removal.
#[derive(Debug, Clone)]
pub struct PaymentBuilder {
    pub fee_payer: Pubkey,
    pub token_program: Pubkey,
    pub mint: Pubkey,
    pub decimals: u8,
    pub source: Pubkey,
    pub destination: Pubkey,
    pub authority: Pubkey,
    pub amount: u64,
    /// `None` leaves the instruction out.
    pub compute_unit_limit: Option<u32>,
    /// `None` leaves the instruction out.
    pub compute_unit_price: Option<u64>,
    /// The memo's bytes (`extra.memo` when the seller gives one); `None` leaves it out.
    pub memo: Option<Vec<u8>>,
    /// Instructions placed between the compute-budget ones and the transfer.
    pub before_transfer: Vec<Instruction>,
    /// Instructions appended after the memo.
    pub extra: Vec<Instruction>,
    pub blockhash: Hash,
    /// A legacy message instead of v0.
    pub legacy: bool,
    /// Tables the v0 message may load addresses from (any key of an instruction that is in one
    /// and is neither a signer nor a program id is loaded from it).
    pub lookup_tables: Vec<AddressLookupTableAccount>,
}

impl PaymentBuilder {
    /// The official payment of `amount` (atomic units) of `mint` from `buyer` to `pay_to`, for a
    /// facilitator whose `extra.feePayer` is `fee_payer`.
    pub fn new(
        mint: &Mint,
        buyer: &Pubkey,
        pay_to: &Pubkey,
        amount: u64,
        fee_payer: &Pubkey,
        blockhash: Hash,
    ) -> Self {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let memo: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            fee_payer: *fee_payer,
            token_program: mint.token_program,
            mint: mint.address,
            decimals: mint.decimals,
            source: mint.ata(buyer),
            destination: mint.ata(pay_to),
            authority: *buyer,
            amount,
            compute_unit_limit: Some(DEFAULT_COMPUTE_UNIT_LIMIT),
            compute_unit_price: Some(DEFAULT_COMPUTE_UNIT_PRICE),
            memo: Some(memo.into_bytes()),
            before_transfer: vec![],
            extra: vec![],
            blockhash,
            legacy: false,
            lookup_tables: vec![],
        }
    }

    /// Transfer from `owner`'s own token account with `owner` as authority (e.g. the fee
    /// payer paying out of its own account: refused).
    pub fn from_owner(mut self, owner: &Pubkey) -> Self {
        self.source = associated_token_address(owner, &self.mint, &self.token_program);
        self.authority = *owner;
        self
    }

    /// The `TransferChecked` of this payment.
    pub fn transfer_instruction(&self) -> Instruction {
        transfer_checked(
            self.token_program,
            self.source,
            self.mint,
            self.destination,
            self.authority,
            self.amount,
            self.decimals,
        )
    }

    /// The instructions, in the official order.
    pub fn instructions(&self) -> Vec<Instruction> {
        let mut ixs = Vec::new();
        if let Some(units) = self.compute_unit_limit {
            ixs.push(set_compute_unit_limit(units));
        }
        if let Some(price) = self.compute_unit_price {
            ixs.push(set_compute_unit_price(price));
        }
        ixs.extend(self.before_transfer.iter().cloned());
        ixs.push(self.transfer_instruction());
        if let Some(m) = &self.memo {
            ixs.push(memo(m));
        }
        ixs.extend(self.extra.iter().cloned());
        ixs
    }

    pub fn message(&self) -> Result<VersionedMessage, SolanaError> {
        self.message_with(&self.instructions())
    }

    pub fn message_with(&self, ixs: &[Instruction]) -> Result<VersionedMessage, SolanaError> {
        compile_message(
            &self.fee_payer,
            ixs,
            self.blockhash.clone(),
            self.legacy,
            &self.lookup_tables,
        )
    }

    /// The transaction signed by those of `signers` it requires (normally just the buyer).
    pub fn build(&self, signers: &[&Keypair]) -> Result<VersionedTransaction, SolanaError> {
        Ok(sign_partial(self.message()?, signers))
    }

    /// [`PaymentBuilder::build`] with other instructions (start from [`Self::instructions`]).
    pub fn build_with(
        &self,
        ixs: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<VersionedTransaction, SolanaError> {
        Ok(sign_partial(self.message_with(ixs)?, signers))
    }
}
