#include <iostream>

#include "myproject.h"
#include "parameters.h"


void myproject(
    hls::stream<input_t> &input_image,
    hls::stream<result_t> &layer21_out
) {

    // hls-fpga-machine-learning insert IO
    #pragma HLS INTERFACE axis port=input_image,layer21_out 
    #pragma HLS DATAFLOW

    // hls-fpga-machine-learning insert load weights
#ifndef __SYNTHESIS__
    static bool loaded_weights = false;
    if (!loaded_weights) {
        nnet::load_weights_from_txt<conv_0_weight_t, 432>(w2, "w2.txt");
        nnet::load_weights_from_txt<conv_0_bias_t, 16>(b2, "b2.txt");
        nnet::load_weights_from_txt<conv_1_weight_t, 2304>(w6, "w6.txt");
        nnet::load_weights_from_txt<conv_1_bias_t, 16>(b6, "b6.txt");
        nnet::load_weights_from_txt<conv_2_weight_t, 3456>(w10, "w10.txt");
        nnet::load_weights_from_txt<conv_2_bias_t, 24>(b10, "b10.txt");
        nnet::load_weights_from_txt<dense_0_weight_t, 4032>(w15, "w15.txt");
        nnet::load_weights_from_txt<dense_0_bias_t, 42>(b15, "b15.txt");
        nnet::load_weights_from_txt<dense_1_weight_t, 2688>(w18, "w18.txt");
        nnet::load_weights_from_txt<dense_1_bias_t, 64>(b18, "b18.txt");
        nnet::load_weights_from_txt<output_dense_weight_t, 640>(w21, "w21.txt");
        nnet::load_weights_from_txt<output_dense_bias_t, 10>(b21, "b21.txt");
        loaded_weights = true;    }
#endif
    // ****************************************
    // NETWORK INSTANTIATION
    // ****************************************

    // hls-fpga-machine-learning insert layers

    hls::stream<layer2_t> layer2_out("layer2_out");
    #pragma HLS STREAM variable=layer2_out depth=900

    hls::stream<layer4_t> layer4_out("layer4_out");
    #pragma HLS STREAM variable=layer4_out depth=900

    hls::stream<layer5_t> layer5_out("layer5_out");
    #pragma HLS STREAM variable=layer5_out depth=225

    hls::stream<layer6_t> layer6_out("layer6_out");
    #pragma HLS STREAM variable=layer6_out depth=169

    hls::stream<layer8_t> layer8_out("layer8_out");
    #pragma HLS STREAM variable=layer8_out depth=169

    hls::stream<layer9_t> layer9_out("layer9_out");
    #pragma HLS STREAM variable=layer9_out depth=36

    hls::stream<layer10_t> layer10_out("layer10_out");
    #pragma HLS STREAM variable=layer10_out depth=16

    hls::stream<layer12_t> layer12_out("layer12_out");
    #pragma HLS STREAM variable=layer12_out depth=16

    hls::stream<layer13_t> layer13_out("layer13_out");
    #pragma HLS STREAM variable=layer13_out depth=4

    auto& layer14_out = layer13_out;
    hls::stream<layer15_t> layer15_out("layer15_out");
    #pragma HLS STREAM variable=layer15_out depth=1

    hls::stream<layer17_t> layer17_out("layer17_out");
    #pragma HLS STREAM variable=layer17_out depth=1

    hls::stream<layer18_t> layer18_out("layer18_out");
    #pragma HLS STREAM variable=layer18_out depth=1

    hls::stream<layer20_t> layer20_out("layer20_out");
    #pragma HLS STREAM variable=layer20_out depth=1

    nnet::conv_2d_cl<input_t, layer2_t, config2>(input_image, layer2_out, w2, b2); // conv_0

    nnet::relu<layer2_t, layer4_t, relu_config4>(layer2_out, layer4_out); // relu_1

    nnet::pooling2d_cl<layer4_t, layer5_t, config5>(layer4_out, layer5_out); // maxpool_2

    nnet::conv_2d_cl<layer5_t, layer6_t, config6>(layer5_out, layer6_out, w6, b6); // conv_1

    nnet::relu<layer6_t, layer8_t, relu_config8>(layer6_out, layer8_out); // relu_4

    nnet::pooling2d_cl<layer8_t, layer9_t, config9>(layer8_out, layer9_out); // maxpool_5

    nnet::conv_2d_cl<layer9_t, layer10_t, config10>(layer9_out, layer10_out, w10, b10); // conv_2

    nnet::relu<layer10_t, layer12_t, relu_config12>(layer10_out, layer12_out); // relu_7

    nnet::pooling2d_cl<layer12_t, layer13_t, config13>(layer12_out, layer13_out); // maxpool_8

    nnet::dense<layer13_t, layer15_t, config15>(layer14_out, layer15_out, w15, b15); // dense_0

    nnet::relu<layer15_t, layer17_t, relu_config17>(layer15_out, layer17_out); // relu_11

    nnet::dense<layer17_t, layer18_t, config18>(layer17_out, layer18_out, w18, b18); // dense_1

    nnet::relu<layer18_t, layer20_t, relu_config20>(layer18_out, layer20_out); // relu_13

    nnet::dense<layer20_t, result_t, config21>(layer20_out, layer21_out, w21, b21); // output_dense

}

