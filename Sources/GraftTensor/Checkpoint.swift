import Foundation

// Activation checkpointing, as `torch.utils.checkpoint`: a piece of the graph runs without
// recording in the forward pass, and the tape keeps one node holding only the piece's inputs.
// Its backward runs the piece again with recording on, then back-propagates the output gradient
// through that fresh graph (which is freed as it goes). Memory: the piece's intermediate
// activations live only while its own backward runs instead of from forward to backward, at the
// cost of computing the piece twice. Side networks (LST, UniPT) use it: their pieces are cheap
// to recompute but keep several tensors per token and layer.

extension Tensor {
  /// Runs `body` on `inputs` without keeping its activations for backward; backward recomputes
  /// them (activation checkpointing).
  ///
  /// `parameters` lists the trainable tensors `body` reads besides `inputs` (a module's
  /// weights): a node is recorded when any input or parameter requires a gradient, and the
  /// parameters' gradients accumulate into their `grad` when backward reaches the node. The
  /// node keeps only `inputs` alive. `body` must compute the same values when run again (no
  /// dropout or other random draws inside), as with PyTorch's checkpoint without RNG state.
  /// Gradients equal those of running `body` directly.
  public static func checkpoint(
    _ inputs: [Tensor], parameters: [Tensor] = [], _ body: @escaping ([Tensor]) -> [Tensor]
  ) -> [Tensor] {
    let needsGradient =
      GradMode.enabled
      && (inputs.contains(where: \.requiresGrad) || parameters.contains(where: \.requiresGrad))
    guard needsGradient else { return body(inputs) }
    let outputs = GradMode.withNoGrad { body(inputs) }
    return checkpoint(inputs, parameters: parameters, computed: outputs, body)
  }

  /// The checkpoint node over `outputs`, the values `body` gave on `inputs` without recording.
  private static func checkpoint(
    _ inputs: [Tensor], parameters: [Tensor], computed outputs: [Tensor],
    _ body: @escaping ([Tensor]) -> [Tensor]
  ) -> [Tensor] {
    precondition(!outputs.isEmpty, "checkpoint: the body returned no tensor")
    let shapes = outputs.map(\.shape)
    // A single node for all outputs: they are laid end to end in one flat tensor, and each
    // output is a recorded slice of it.
    let flat =
      outputs.count == 1
      ? outputs[0].reshaped([outputs[0].count]).detached()
      : Tensor.concat(outputs.map { $0.reshaped([$0.count]) }, axis: 0)
    let node = flat.recording(
      "checkpoint", inputs + parameters, saving: inputs
    ) { gradient in
      GradMode.withGrad {
        let fresh = inputs.map { input -> Tensor in
          let leaf = input.detached()
          leaf.requiresGrad = input.requiresGrad
          return leaf
        }
        let again = body(fresh)
        precondition(
          again.map(\.shape) == shapes, "checkpoint: the body's outputs changed shape when rerun")
        let joined =
          again.count == 1
          ? again[0].reshaped([again[0].count])
          : Tensor.concat(again.map { $0.reshaped([$0.count]) }, axis: 0)
        if joined.requiresGrad { joined.backward(gradient) }
        return fresh.map { $0.requiresGrad ? $0.grad : nil } + parameters.map { _ in nil }
      }
    }
    var offset = 0
    return shapes.map { shape in
      let n = shape.reduce(1, *)
      defer { offset += n }
      return (outputs.count == 1 ? node : node.narrow(0, start: offset, length: n)).reshaped(shape)
    }
  }

  /// `checkpoint`, except that while `budget` lasts the piece is kept as recorded instead.
  ///
  /// The piece runs once with recording on; when what its new nodes saved (by the tape's own
  /// count, `TapeStats.savedBytes`) fits in what is left of `budget`, the recorded graph stays
  /// and the bytes are taken from the budget, so backward does not run the piece again. The
  /// first piece that does not fit empties the budget, its recording is dropped and it, like
  /// every later piece, becomes a checkpoint node holding only its inputs (the values computed
  /// are the same, so nothing is computed twice in the forward pass). A side network whose
  /// layers keep little at this batch size then trains without recomputation, and one that
  /// keeps much recomputes all but its first layers; the gradients are those of the plain graph
  /// either way (a recomputation repeats the forward pass's own ops on the same tensors).
  public static func checkpoint(
    _ inputs: [Tensor], parameters: [Tensor] = [], budget: CheckpointBudget,
    _ body: @escaping ([Tensor]) -> [Tensor]
  ) -> [Tensor] {
    let needsGradient =
      GradMode.enabled
      && (inputs.contains(where: \.requiresGrad) || parameters.contains(where: \.requiresGrad))
    guard needsGradient, budget.remaining > 0 else {
      return checkpoint(inputs, parameters: parameters, body)
    }
    let before = TapeStats.savedBytes
    let recorded = body(inputs)
    let kept = TapeStats.savedBytes - before
    if kept <= budget.remaining {
      budget.remaining -= kept
      return recorded
    }
    budget.remaining = 0
    // Detached copies of the values drop the recorded graph; the checkpoint node recomputes
    // the piece in backward as the plain `checkpoint` does.
    let values = recorded.map { $0.detached() }
    return checkpoint(inputs, parameters: parameters, computed: values, body)
  }

  /// `checkpoint` for a body of one input and one output.
  public static func checkpoint(
    _ input: Tensor, parameters: [Tensor] = [], _ body: @escaping (Tensor) -> Tensor
  ) -> Tensor {
    checkpoint([input], parameters: parameters) { [body($0[0])] }[0]
  }
}

/// What a forward pass may keep of the pieces it passes to
/// `Tensor.checkpoint(_:parameters:budget:_:)`, in bytes; one per forward pass, shared by its
/// pieces in order.
public final class CheckpointBudget {
  /// Bytes not yet taken.
  public fileprivate(set) var remaining: Int

  /// A budget of `bytes` (0: every piece is checkpointed).
  public init(bytes: Int) { remaining = Swift.max(0, bytes) }
}
