//! [`DetrBackend`] on `Autodiff<B>`: the convolution as one autodiff node whose weight gradient
//! is the inner backend's [`DetrBackend::conv2d_weight_grad`]; the input and bias gradients are
//! Burn's (`conv2d_x_backward`, `conv2d_bias_backward`), as in Burn's own convolution node.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::Autodiff;
use burn::tensor::ops::{ConvOptions, FloatTensor};

use super::DetrBackend;

/// The node of a convolution without bias: parents `x` and `weight`.
#[derive(Debug)]
struct Conv2dNoBias;

/// The node of a convolution with bias: parents `x`, `weight` and `bias`.
#[derive(Debug)]
struct Conv2dWithBias;

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
        let gx = B::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
        grads.register::<B>(id, gx);
    }
    if let Some(id) = node_weight {
        let gw = B::conv2d_weight_grad(x, weight, grad, options);
        grads.register::<B>(id, gw);
    }
}

impl<B: DetrBackend> Backward<B, 2> for Conv2dNoBias {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        let [node_x, node_weight] = ops.parents;
        let ids = [node_x.map(|n| n.id), node_weight.map(|n| n.id)];
        input_and_weight_grads::<B>(ids, x, weight, grad, options, grads);
    }
}

impl<B: DetrBackend> Backward<B, 3> for Conv2dWithBias {
    type State = (NodeId, NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, weight_state, bias_state, options) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let weight = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(weight_state);
        if let Some(node) = node_bias {
            let bias = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(bias_state);
            let gb = B::conv2d_bias_backward(x.clone(), bias, grad.clone());
            grads.register::<B>(node.id, gb);
        }
        let ids = [node_x.map(|n| n.id), node_weight.map(|n| n.id)];
        input_and_weight_grads::<B>(ids, x, weight, grad, options, grads);
    }
}

impl<B: DetrBackend, C: CheckpointStrategy> DetrBackend for Autodiff<B, C> {
    fn detr_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match bias {
            Some(bias) => match Conv2dWithBias
                .prepare::<C>([x.node.clone(), weight.node.clone(), bias.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let x_state = prep.checkpoint(&x);
                    let weight_state = prep.checkpoint(&weight);
                    let bias_state = prep.checkpoint(&bias);
                    prep.finish(
                        (x_state, weight_state, bias_state, options.clone()),
                        B::conv2d_value(
                            x.primitive,
                            weight.primitive,
                            Some(bias.primitive),
                            options,
                        ),
                    )
                }
                OpsKind::UnTracked(prep) => prep.finish(B::conv2d_value(
                    x.primitive,
                    weight.primitive,
                    Some(bias.primitive),
                    options,
                )),
            },
            None => match Conv2dNoBias
                .prepare::<C>([x.node.clone(), weight.node.clone()])
                .compute_bound()
                .stateful()
            {
                OpsKind::Tracked(mut prep) => {
                    let x_state = prep.checkpoint(&x);
                    let weight_state = prep.checkpoint(&weight);
                    prep.finish(
                        (x_state, weight_state, options.clone()),
                        B::conv2d_value(x.primitive, weight.primitive, None, options),
                    )
                }
                OpsKind::UnTracked(prep) => prep.finish(B::conv2d_value(
                    x.primitive,
                    weight.primitive,
                    None,
                    options,
                )),
            },
        }
    }
}
