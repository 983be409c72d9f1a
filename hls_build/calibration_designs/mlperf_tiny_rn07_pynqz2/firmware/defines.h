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
typedef nnet::array<ap_ufixed<8,0>, 3*1> input_t;
typedef ap_fixed<17,7> q_conv2d_batchnorm_accum_t;
typedef nnet::array<ap_fixed<12,7>, 32*1> layer2_t;
typedef ap_fixed<8,3> q_conv2d_batchnorm_weight_t;
typedef ap_fixed<8,3> q_conv2d_batchnorm_bias_t;
typedef nnet::array<ap_fixed<9,3,AP_RND,AP_SAT,0>, 32*1> layer4_t;
typedef ap_fixed<18,8> q_activation_table_t;
typedef nnet::array<ap_fixed<9,3,AP_RND,AP_SAT,0>, 32*1> layer20_t;
typedef ap_fixed<17,7> q_conv2d_batchnorm_1_accum_t;
typedef nnet::array<ap_fixed<12,7>, 4*1> layer5_t;
typedef ap_fixed<8,3> q_conv2d_batchnorm_1_weight_t;
typedef ap_fixed<8,3> q_conv2d_batchnorm_1_bias_t;
typedef nnet::array<ap_fixed<9,3,AP_RND,AP_SAT,0>, 4*1> layer7_t;
typedef ap_fixed<18,8> q_activation_1_table_t;
typedef nnet::array<ap_fixed<9,3,AP_RND,AP_SAT,0>, 4*1> layer21_t;
typedef ap_fixed<17,7> q_conv2d_batchnorm_2_accum_t;
typedef nnet::array<ap_fixed<12,7>, 32*1> layer8_t;
typedef ap_fixed<8,3> q_conv2d_batchnorm_2_weight_t;
typedef ap_fixed<8,3> q_conv2d_batchnorm_2_bias_t;
typedef nnet::array<ap_fixed<9,3,AP_RND,AP_SAT,0>, 32*1> layer10_t;
typedef ap_fixed<18,8> q_activation_2_table_t;
typedef ap_fixed<17,7> q_conv2d_batchnorm_3_accum_t;
typedef nnet::array<ap_fixed<12,7>, 32*1> layer11_t;
typedef ap_fixed<8,3> q_conv2d_batchnorm_3_weight_t;
typedef ap_fixed<8,3> q_conv2d_batchnorm_3_bias_t;
typedef nnet::array<ap_fixed<9,3,AP_RND,AP_SAT,0>, 32*1> layer13_t;
typedef ap_fixed<18,8> q_activation_3_table_t;
typedef nnet::array<ap_fixed<9,3,AP_RND,AP_SAT,0>, 32*1> layer22_t;
typedef ap_fixed<17,7> q_conv2d_batchnorm_4_accum_t;
typedef nnet::array<ap_fixed<12,7>, 32*1> layer14_t;
typedef ap_fixed<8,3> q_conv2d_batchnorm_4_weight_t;
typedef ap_fixed<8,3> q_conv2d_batchnorm_4_bias_t;
typedef nnet::array<ap_fixed<9,3,AP_RND,AP_SAT,0>, 32*1> layer16_t;
typedef ap_fixed<18,8> q_activation_5_table_t;
typedef ap_fixed<17,7> q_dense_accum_t;
typedef nnet::array<ap_fixed<12,7>, 10*1> result_t;
typedef ap_fixed<8,3> q_dense_weight_t;
typedef ap_fixed<8,3> q_dense_bias_t;
typedef ap_uint<1> layer18_index;

// hls-fpga-machine-learning insert emulator-defines


#endif
