// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

// The two deposit collectors of the x402 `batch-settlement` scheme, written for this
// repository's devnet from the spec and `@x402/evm` 2.27.0's encodings (`collectorData`,
// the ERC-3009 nonce, the Permit2 witness). Placed at the canonical addresses with
// `anvil_setCode`: the settlement contract and Permit2 are constants.

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

interface IDepositCollector {
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external;
}

interface IReceiveWithAuthorization {
    function receiveWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        bytes memory signature
    ) external;
}

interface IPermit2WitnessTransfer {
    struct TokenPermissions {
        address token;
        uint256 amount;
    }

    struct PermitTransferFrom {
        TokenPermissions permitted;
        uint256 nonce;
        uint256 deadline;
    }

    struct SignatureTransferDetails {
        address to;
        uint256 requestedAmount;
    }

    function permitWitnessTransferFrom(
        PermitTransferFrom memory permit,
        SignatureTransferDetails calldata transferDetails,
        address owner,
        bytes32 witness,
        string calldata witnessTypeString,
        bytes calldata signature
    ) external;
}

interface IERC2612 {
    function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external;
}

abstract contract SettlementOnly is IDepositCollector {
    address public constant x402BatchSettlement = 0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003;

    error OnlyX402BatchSettlement();

    modifier onlySettlement() {
        if (msg.sender != x402BatchSettlement) revert OnlyX402BatchSettlement();
        _;
    }
}

/// ERC-3009 `receiveWithAuthorization` into this collector (the token requires `to ==
/// msg.sender`), then on to the settlement contract. The authorization's nonce binds the channel:
/// `keccak256(abi.encode(channelId, salt))`.
contract ERC3009DepositCollector is SettlementOnly {
    using SafeERC20 for IERC20;

    /// `collectorData = abi.encode(uint256 validAfter, uint256 validBefore, uint256 salt, bytes signature)`.
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external
        onlySettlement
    {
        (uint256 validAfter, uint256 validBefore, uint256 salt, bytes memory signature) =
            abi.decode(collectorData, (uint256, uint256, uint256, bytes));
        IReceiveWithAuthorization(token).receiveWithAuthorization(
            payer, address(this), amount, validAfter, validBefore, keccak256(abi.encode(channelId, salt)), signature
        );
        IERC20(token).safeTransfer(x402BatchSettlement, amount);
    }
}

/// Permit2 `permitWitnessTransferFrom` straight into the settlement contract, the witness
/// `DepositWitness(bytes32 channelId)`; optionally an EIP-2612 `permit` to Permit2 first.
contract Permit2DepositCollector is SettlementOnly {
    address public constant PERMIT2 = 0x000000000022D473030F116dDEE9F6B43aC78BA3;

    string public constant DEPOSIT_WITNESS_TYPE_STRING =
        "DepositWitness witness)DepositWitness(bytes32 channelId)TokenPermissions(address token,uint256 amount)";
    bytes32 public constant DEPOSIT_WITNESS_TYPEHASH = keccak256("DepositWitness(bytes32 channelId)");

    error Permit2612AmountMismatch();

    event EIP2612PermitFailed(address indexed token, address indexed owner, bytes data);

    /// `collectorData = abi.encode(uint256 nonce, uint256 deadline, bytes permit2Signature, bytes eip2612PermitData)`,
    /// the last empty or `abi.encode(value, deadline, v, r, s)`.
    function collect(address payer, address token, uint256 amount, bytes32 channelId, bytes calldata collectorData)
        external
        onlySettlement
    {
        (uint256 nonce, uint256 deadline, bytes memory signature, bytes memory permitData) =
            abi.decode(collectorData, (uint256, uint256, bytes, bytes));
        if (permitData.length != 0) {
            (uint256 value, uint256 permitDeadline, uint8 v, bytes32 r, bytes32 s) =
                abi.decode(permitData, (uint256, uint256, uint8, bytes32, bytes32));
            if (value != amount) revert Permit2612AmountMismatch();
            // Best effort: someone may have used the permit already; Permit2's transfer decides.
            try IERC2612(token).permit(payer, PERMIT2, value, permitDeadline, v, r, s) {}
            catch (bytes memory data) {
                emit EIP2612PermitFailed(token, payer, data);
            }
        }
        IPermit2WitnessTransfer(PERMIT2).permitWitnessTransferFrom(
            IPermit2WitnessTransfer.PermitTransferFrom({
                permitted: IPermit2WitnessTransfer.TokenPermissions({token: token, amount: amount}),
                nonce: nonce,
                deadline: deadline
            }),
            IPermit2WitnessTransfer.SignatureTransferDetails({to: x402BatchSettlement, requestedAmount: amount}),
            payer,
            keccak256(abi.encode(DEPOSIT_WITNESS_TYPEHASH, channelId)),
            DEPOSIT_WITNESS_TYPE_STRING,
            signature
        );
    }
}
