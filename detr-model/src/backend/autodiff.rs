//! [`DetrBackend`] on `Autodiff<B>`: the fused convolution (convolution, residual sum, ReLU) as
//! one autodiff node. Its backward pass masks the output gradient by the ReLU's output with the
//! inner backend's [`DetrBackend::relu_grad`], hands it unchanged to the residual, and takes the
//! weight gradient from [`DetrBackend::conv2d_weight_grad`]; the input and bias gradients are
//! Burn's (`conv2d_x_backward`, `conv2d_bias_backward`), as in Burn's own convolution node.
//! The stem's max pooling skips the graph (and the indices) when no gradient flows to its input;
//! dropout's mask is the inner backend's, outside the graph.
//! A GroupNorm the inner backend computes itself is one node too.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ConvOptions, FloatTensor, IntTensor};
use burn::tensor::{FloatDType, Shape};

use super::{DetrBackend, GroupNormStats};

/// The node of a fused convolution ([`DetrBackend::detr_conv2d`]): parents `x`, `weight`, then
/// `bias` and `residual` when present, in that order (2, 3 or 4 parents).
#[derive(Debug)]
struct FusedConv2d;

/// What [`FusedConv2d`] keeps for its backward pass.
#[derive(Debug, Clone)]
struct FusedConv2dState<T> {
    x: NodeId,
    weight: NodeId,
    bias: Option<NodeId>,
    has_residual: bool,
    /// The output when the node applied a ReLU: its gradient's mask.
    relu_output: Option<T>,
    options: ConvOptions<2>,
}

impl<B: DetrBackend, const N: usize> Backward<B, N> for FusedConv2d {
    type State = FusedConv2dState<B::FloatTensorPrimitive>;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let state = ops.state;
        let mut grad = grads.consume::<B>(&ops.node);
        if let Some(output) = state.relu_output {
            grad = B::relu_grad(output, grad);
        }
        let parents = ops.parents;
        if state.has_residual {
            if let Some(node) = &parents[N - 1] {
                grads.register::<B>(node.id, grad.clone());
            }
        }
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.x);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.weight);
        if let (Some(bias_state), Some(node)) = (state.bias, &parents[2.min(N - 1)]) {
            let bias = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(bias_state);
            let gb = B::conv2d_bias_backward(x.clone(), bias, grad.clone());
            grads.register::<B>(node.id, gb);
        }
        let ids = [
            parents[0].as_ref().map(|n| n.id),
            parents[1].as_ref().map(|n| n.id),
        ];
        input_and_weight_grads::<B>(ids, x, weight, grad, state.options, grads);
    }
}

/// Registers the gradients of `x` and `weight` for the parents that track one.
fn input_and_weight_grads<B: DetrBackend>(
    [node_x, node_weight]: [Option<NodeId>; 2],
    x: B::FloatTensorPrimitive,
    weight: B::FloatTensorPrimitive,
    grad: B::FloatTensorPrimitive,
    options: ConvOptions<2>,
    grads: &mut Gradients,
) {
    if let Some(id) = node_x {
        let gx = B::conv2d_input_grad(x.clone(), weight.clone(), grad.clone(), options.clone());
        grads.register::<B>(id, gx);
    }
    if let Some(id) = node_weight {
        let gw = B::conv2d_weight_grad(x, weight, grad, options);
        grads.register::<B>(id, gw);
    }
}

/// Records (or, untracked, only computes) a [`FusedConv2d`] over `parents`, which are
/// `x`, `weight`, then `bias` and `residual` when present.
fn fused_node<B: DetrBackend, C: CheckpointStrategy, const N: usize>(
    parents: [&FloatTensor<Autodiff<B, C>>; N],
    has_bias: bool,
    has_residual: bool,
    relu: bool,
    options: ConvOptions<2>,
) -> FloatTensor<Autodiff<B, C>> {
    let primitive = |i: usize| parents[i].primitive.clone();
    let value = || {
        let bias = has_bias.then(|| primitive(2));
        let residual = has_residual.then(|| primitive(N - 1));
        B::conv2d_fused_value(
            primitive(0),
            primitive(1),
            bias,
            residual,
            relu,
            options.clone(),
        )
    };
    match FusedConv2d
        .prepare::<C>(parents.map(|p| p.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x = prep.checkpoint(parents[0]);
            let weight = prep.checkpoint(parents[1]);
            let bias = has_bias.then(|| prep.checkpoint(parents[2]));
            let output = value();
            let state = FusedConv2dState {
                x,
                weight,
                bias,
                has_residual,
                relu_output: relu.then(|| output.clone()),
                options: options.clone(),
            };
            prep.finish(state, output)
        }
        OpsKind::UnTracked(prep) => prep.finish(value()),
    }
}

/// The node of a GroupNorm the inner backend computes itself ([`DetrBackend::detr_group_norm`]):
/// parents `x`, `gamma`, `beta`; the backward pass is [`DetrBackend::group_norm_backward`].
#[derive(Debug)]
struct GroupNormNode;

/// What [`GroupNormNode`] keeps for its backward pass.
#[derive(Debug, Clone)]
struct GroupNormState<B: DetrBackend> {
    x: NodeId,
    gamma: NodeId,
    stats: GroupNormStats<B>,
    groups: usize,
}

impl<B: DetrBackend> Backward<B, 3> for GroupNormNode {
    type State = GroupNormState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let state = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.x);
        let gamma = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.gamma);
        let g = B::group_norm_backward(x, gamma, state.stats, grad, state.groups);
        let [x_node, gamma_node, beta_node] = ops.parents;
        for (node, value) in [(x_node, g.x), (gamma_node, g.gamma), (beta_node, g.beta)] {
            if let Some(node) = node {
                grads.register::<B>(node.id, value);
            }
        }
    }
}

/// The node of the stem's max pooling when its input takes a gradient: the values and indices
/// from [`DetrBackend::max_pool2d_indexed`], the backward pass Burn's
/// `max_pool2d_with_indices_backward` (what Burn's own node computes).
#[derive(Debug)]
struct MaxPool2dNode;

/// What [`MaxPool2dNode`] keeps for its backward pass.
#[derive(Debug, Clone)]
struct MaxPool2dState<B: Backend> {
    x: NodeId,
    indices: IntTensor<B>,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
}

impl<B: DetrBackend> Backward<B, 1> for MaxPool2dNode {
    type State = MaxPool2dState<B>;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let state = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(state.x);
        if let [Some(node)] = ops.parents {
            let gx = B::max_pool2d_with_indices_backward(
                x,
                state.kernel,
                state.stride,
                state.padding,
                [1, 1],
                false,
                grad,
                state.indices,
            );
            grads.register::<B>(node.id, gx.x_grad);
        }
    }
}

impl<B: DetrBackend, C: CheckpointStrategy> DetrBackend for Autodiff<B, C> {
    fn detr_group_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        epsilon: f64,
    ) -> Option<FloatTensor<Self>> {
        let forward = B::group_norm_forward(
            x.primitive.clone(),
            gamma.primitive.clone(),
            beta.primitive.clone(),
            groups,
            epsilon,
        )?;
        let parents = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        Some(
            match GroupNormNode
                .prepare::<C>(parents)
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let state = GroupNormState {
                        x: prep.checkpoint(&x),
                        gamma: prep.checkpoint(&gamma),
                        stats: forward.stats,
                        groups,
                    };
                    prep.finish(state, forward.output)
                }
                OpsKind::UnTracked(prep) => prep.finish(forward.output),
            },
        )
    }

    fn detr_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        residual: Option<FloatTensor<Self>>,
        relu: bool,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match (&bias, &residual) {
            (None, None) => fused_node::<B, C, 2>([&x, &weight], false, false, relu, options),
            (Some(b), None) => fused_node::<B, C, 3>([&x, &weight, b], true, false, relu, options),
            (None, Some(r)) => fused_node::<B, C, 3>([&x, &weight, r], false, true, relu, options),
            (Some(b), Some(r)) => {
                fused_node::<B, C, 4>([&x, &weight, b, r], true, true, relu, options)
            }
        }
    }

    /// An input no gradient flows to (the stem of the original's recipe, frozen): the inner
    /// backend's pooling, which needs no indices, as a tensor outside the graph (what Burn's
    /// own node does for such an input, with `max_pool2d`). Otherwise one [`MaxPool2dNode`]
    /// over the inner backend's [`DetrBackend::max_pool2d_indexed`].
    fn max_pool2d_value(
        x: FloatTensor<Self>,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    ) -> FloatTensor<Self> {
        if x.node.requirement.is_none() {
            let y = B::max_pool2d_value(x.primitive, kernel, stride, padding);
            return <Self as AutodiffBackend>::from_inner(y);
        }
        match MaxPool2dNode
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let pooled = B::max_pool2d_indexed(x.primitive.clone(), kernel, stride, padding);
                let state = MaxPool2dState {
                    x: prep.checkpoint(&x),
                    indices: pooled.indices,
                    kernel,
                    stride,
                    padding,
                };
                prep.finish(state, pooled.output)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::max_pool2d_value(x.primitive, kernel, stride, padding))
            }
        }
    }

    fn dropout_mask(
        shape: Shape,
        keep: f64,
        device: &Self::Device,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::dropout_mask(shape, keep, device, dtype))
    }
}
