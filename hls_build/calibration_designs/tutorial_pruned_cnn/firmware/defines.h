#ifndef DEFINES_H_
#define DEFINES_H_

#include "ap_fixed.h"
#include "ap_int.h"
#include "nnet_utils/nnet_types.h"
#include <array>
#include <cstddef>
#include <cstdio>
#include <tuple>
#include <tuple>


// hls-fpga-machine-learning insert numbers

// hls-fpga-machine-learning insert layer-precision
typedef nnet::array<ap_fixed<16,6>, 3*1> input_t;
typedef ap_fixed<16,6> conv_0_accum_t;
typedef nnet::array<ap_fixed<16,6>, 16*1> layer2_t;
typedef ap_fixed<16,6> conv_0_weight_t;
typedef ap_fixed<16,6> conv_0_bias_t;
typedef nnet::array<ap_fixed<16,6>, 16*1> layer4_t;
typedef ap_fixed<18,8> relu_1_table_t;
typedef ap_fixed<16,6> maxpool_2_accum_t;
typedef nnet::array<ap_fixed<16,6>, 16*1> layer5_t;
typedef ap_fixed<16,6> conv_1_accum_t;
typedef nnet::array<ap_fixed<16,6>, 16*1> layer6_t;
typedef ap_fixed<16,6> conv_1_weight_t;
typedef ap_fixed<16,6> conv_1_bias_t;
typedef nnet::array<ap_fixed<16,6>, 16*1> layer8_t;
typedef ap_fixed<18,8> relu_4_table_t;
typedef ap_fixed<16,6> maxpool_5_accum_t;
typedef nnet::array<ap_fixed<16,6>, 16*1> layer9_t;
typedef ap_fixed<16,6> conv_2_accum_t;
typedef nnet::array<ap_fixed<16,6>, 24*1> layer10_t;
typedef ap_fixed<16,6> conv_2_weight_t;
typedef ap_fixed<16,6> conv_2_bias_t;
typedef nnet::array<ap_fixed<16,6>, 24*1> layer12_t;
typedef ap_fixed<18,8> relu_7_table_t;
typedef ap_fixed<16,6> maxpool_8_accum_t;
typedef nnet::array<ap_fixed<16,6>, 24*1> layer13_t;
typedef ap_fixed<16,6> dense_0_accum_t;
typedef nnet::array<ap_fixed<16,6>, 42*1> layer15_t;
typedef ap_fixed<16,6> dense_0_weight_t;
typedef ap_fixed<16,6> dense_0_bias_t;
typedef ap_uint<1> layer15_index;
typedef nnet::array<ap_fixed<16,6>, 42*1> layer17_t;
typedef ap_fixed<18,8> relu_11_table_t;
typedef ap_fixed<16,6> dense_1_accum_t;
typedef nnet::array<ap_fixed<16,6>, 64*1> layer18_t;
typedef ap_fixed<16,6> dense_1_weight_t;
typedef ap_fixed<16,6> dense_1_bias_t;
typedef ap_uint<1> layer18_index;
typedef nnet::array<ap_fixed<16,6>, 64*1> layer20_t;
typedef ap_fixed<18,8> relu_13_table_t;
typedef ap_fixed<16,6> output_dense_accum_t;
typedef nnet::array<ap_fixed<16,6>, 10*1> result_t;
typedef ap_fixed<16,6> output_dense_weight_t;
typedef ap_fixed<16,6> output_dense_bias_t;
typedef ap_uint<1> layer21_index;

// hls-fpga-machine-learning insert emulator-defines


#endif
