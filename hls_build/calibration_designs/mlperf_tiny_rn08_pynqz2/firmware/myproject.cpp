#include <iostream>

#include "myproject.h"
#include "parameters.h"


void myproject(
    hls::stream<input_t> &input_1,
    hls::stream<result_t> &layer18_out
) {

    // hls-fpga-machine-learning insert IO
    #pragma HLS INTERFACE axis port=input_1,layer18_out 
    #pragma HLS DATAFLOW

    // hls-fpga-machine-learning insert load weights
#ifndef __SYNTHESIS__
    static bool loaded_weights = false;
    if (!loaded_weights) {
        nnet::load_weights_from_txt<q_conv2d_batchnorm_weight_t, 96>(w2, "w2.txt");
        nnet::load_weights_from_txt<q_conv2d_batchnorm_bias_t, 32>(b2, "b2.txt");
        nnet::load_weights_from_txt<q_conv2d_batchnorm_1_weight_t, 2048>(w5, "w5.txt");
        nnet::load_weights_from_txt<q_conv2d_batchnorm_1_bias_t, 4>(b5, "b5.txt");
        nnet::load_weights_from_txt<q_conv2d_batchnorm_2_weight_t, 2048>(w8, "w8.txt");
        nnet::load_weights_from_txt<q_conv2d_batchnorm_2_bias_t, 32>(b8, "b8.txt");
        nnet::load_weights_from_txt<q_conv2d_batchnorm_3_weight_t, 16384>(w11, "w11.txt");
        nnet::load_weights_from_txt<q_conv2d_batchnorm_3_bias_t, 32>(b11, "b11.txt");
        nnet::load_weights_from_txt<q_conv2d_batchnorm_4_weight_t, 16384>(w14, "w14.txt");
        nnet::load_weights_from_txt<q_conv2d_batchnorm_4_bias_t, 32>(b14, "b14.txt");
        nnet::load_weights_from_txt<q_dense_weight_t, 20480>(w18, "w18.txt");
        nnet::load_weights_from_txt<q_dense_bias_t, 10>(b18, "b18.txt");
        loaded_weights = true;    }
#endif
    // ****************************************
    // NETWORK INSTANTIATION
    // ****************************************

    // hls-fpga-machine-learning insert layers

    hls::stream<layer2_t> layer2_out("layer2_out");
    #pragma HLS STREAM variable=layer2_out depth=1024

    hls::stream<layer4_t> layer4_out("layer4_out");
    #pragma HLS STREAM variable=layer4_out depth=1024

    hls::stream<layer20_t> layer20_out("layer20_out");
    #pragma HLS STREAM variable=layer20_out depth=1225

    hls::stream<layer5_t> layer5_out("layer5_out");
    #pragma HLS STREAM variable=layer5_out depth=1024

    hls::stream<layer7_t> layer7_out("layer7_out");
    #pragma HLS STREAM variable=layer7_out depth=1024

    hls::stream<layer21_t> layer21_out("layer21_out");
    #pragma HLS STREAM variable=layer21_out depth=1225

    hls::stream<layer8_t> layer8_out("layer8_out");
    #pragma HLS STREAM variable=layer8_out depth=1024

    hls::stream<layer10_t> layer10_out("layer10_out");
    #pragma HLS STREAM variable=layer10_out depth=1024

    hls::stream<layer11_t> layer11_out("layer11_out");
    #pragma HLS STREAM variable=layer11_out depth=64

    hls::stream<layer13_t> layer13_out("layer13_out");
    #pragma HLS STREAM variable=layer13_out depth=64

    hls::stream<layer22_t> layer22_out("layer22_out");
    #pragma HLS STREAM variable=layer22_out depth=121

    hls::stream<layer14_t> layer14_out("layer14_out");
    #pragma HLS STREAM variable=layer14_out depth=64

    hls::stream<layer16_t> layer16_out("layer16_out");
    #pragma HLS STREAM variable=layer16_out depth=64

    auto& layer17_out = layer16_out;
    nnet::pointwise_conv_2d_cl<input_t, layer2_t, config23>(input_1, layer2_out, w2, b2); // q_conv2d_batchnorm

    nnet::relu<layer2_t, layer4_t, relu_config4>(layer2_out, layer4_out); // q_activation

    nnet::zeropad2d_cl<layer4_t, layer20_t, config20>(layer4_out, layer20_out); // zp2d_q_conv2d_batchnorm_1

    nnet::conv_2d_cl<layer20_t, layer5_t, config5>(layer20_out, layer5_out, w5, b5); // q_conv2d_batchnorm_1

    nnet::relu<layer5_t, layer7_t, relu_config7>(layer5_out, layer7_out); // q_activation_1

    nnet::zeropad2d_cl<layer7_t, layer21_t, config21>(layer7_out, layer21_out); // zp2d_q_conv2d_batchnorm_2

    nnet::conv_2d_cl<layer21_t, layer8_t, config8>(layer21_out, layer8_out, w8, b8); // q_conv2d_batchnorm_2

    nnet::relu<layer8_t, layer10_t, relu_config10>(layer8_out, layer10_out); // q_activation_2

    nnet::conv_2d_cl<layer10_t, layer11_t, config11>(layer10_out, layer11_out, w11, b11); // q_conv2d_batchnorm_3

    nnet::relu<layer11_t, layer13_t, relu_config13>(layer11_out, layer13_out); // q_activation_3

    nnet::zeropad2d_cl<layer13_t, layer22_t, config22>(layer13_out, layer22_out); // zp2d_q_conv2d_batchnorm_4

    nnet::conv_2d_cl<layer22_t, layer14_t, config14>(layer22_out, layer14_out, w14, b14); // q_conv2d_batchnorm_4

    nnet::relu<layer14_t, layer16_t, relu_config16>(layer14_out, layer16_out); // q_activation_5

    nnet::dense<layer16_t, result_t, config18>(layer17_out, layer18_out, w18, b18); // q_dense

}

