# HLS synthesis of the hls4ml accelerator into a Vivado IP (body; hls_build.vivado prepends the settings).
#
# Runs under Vitis HLS (`vitis_hls -f`, or `vitis-run --mode hls --tcl` from 2024.2) or the legacy Vivado HLS
# (`vivado_hls -f`). Settings defined before this body:
#   hls_flavor         vitis | vivado_hls
#   work_dir           folder the HLS project is created in
#   hls_project_name   HLS project folder name (myproject_prj)
#   solution           solution name (solution1)
#   top                top function (myproject_axi)
#   sources            C++ files: the network and the AXI-stream wrapper
#   cflags             compiler flags of every source
#   part               FPGA part
#   clock_period_ns    target clock period
#   clock_uncertainty  clock uncertainty (hls4ml's 12.5%)

proc overlay_step {msg} {
    puts "@@overlay: $msg"
    flush stdout
}

cd $work_dir
overlay_step "HLS project $hls_project_name ($hls_flavor, part $part, clock ${clock_period_ns} ns)"
open_project -reset $hls_project_name
set_top $top
foreach src $sources {
    add_files $src -cflags $cflags
}
if {$hls_flavor eq "vitis"} {
    # The IP-catalog flow (Vitis HLS's other target is a Vitis kernel).
    open_solution -flow_target vivado -reset $solution
} else {
    open_solution -reset $solution
}
set_part $part
create_clock -period $clock_period_ns -name default
set_clock_uncertainty $clock_uncertainty default
# Tuning options of hls4ml's own build_prj.tcl; not every release has each of them.
catch {config_array_partition -maximum_size 4096}
catch {config_compile -name_max_length 80}
catch {config_schedule -enable_dsp_full_reg=false}

overlay_step "csynth_design"
csynth_design
overlay_step "export_design -format ip_catalog"
export_design -format ip_catalog
overlay_step "HLS done: [file join $work_dir $hls_project_name $solution impl ip]"
exit
