# Vivado block design of an overlay: processing system + AXI DMA (simple mode) + the hls4ml accelerator, then
# implementation to a bitstream, reports, and the .bit/.hwh pair (body; hls_build.vivado prepends the settings).
#
#   PS --ctrl master--> SmartConnect --> DMA S_AXI_LITE
#   DMA M_AXIS_MM2S --> accelerator in  (AXI4-Stream with TLAST)
#   accelerator out --> DMA S_AXIS_S2MM (TLAST ends the S2MM transfer)
#   DMA M_AXI_MM2S, M_AXI_S2MM --> SmartConnect --> PS high-performance port (DDR)
#   one PL clock and one reset block for everything; DMA and accelerator grouped as <hier_name>/<dma_cell>.
#
# Settings defined before this body (from hls_build.boards and the bundle's manifest):
#   part board_part board_files_hint
#   ps_ip ps_vlnv ps_cell ps_rule ps_rule_config ps_config pl_clock_property pl_clock_mhz pl_clock_pin pl_reset_pin
#   ctrl_master_port ctrl_master_clock_pin hp_port hp_clock_pin
#   ip_repo hls_top hier_name dma_cell ip_cell
#   in_bits out_bits mm_bits length_width addr_width
#   proj_name proj_dir bd_name out_dir out_stem jobs max_threads

proc overlay_step {msg} {
    puts "@@overlay: $msg"
    flush stdout
}

proc pins {args} {
    set found {}
    foreach name $args {
        set pin [get_bd_pins -quiet $name]
        if {$pin eq ""} {
            error "block design: no pin $name"
        }
        lappend found $pin
    }
    return $found
}

proc intf_pin {name} {
    set pin [get_bd_intf_pins -quiet $name]
    if {$pin eq ""} {
        error "block design: no interface pin $name"
    }
    return $pin
}

catch {set_param general.maxThreads $max_threads}
file mkdir $out_dir

# --- project ---------------------------------------------------------------------------------------------------------
overlay_step "project $proj_name for $part"
create_project -force $proj_name $proj_dir -part $part
set found_board_part [get_board_parts -quiet $board_part]
if {$found_board_part eq ""} {
    # Another version of the same board's files will do (with a warning); none at all is an error.
    set any_version [lindex [lsort -dictionary [get_board_parts -quiet [regsub {:[^:]*$} $board_part {:*}]]] end]
    if {$any_version eq ""} {
        error "Vivado has no board files for $board_part: $board_files_hint"
    }
    puts "WARNING: board part $board_part not installed; using $any_version"
    set found_board_part $any_version
}
set_property board_part $found_board_part [current_project]
set_property ip_repo_paths [list $ip_repo] [current_project]
update_ip_catalog
set hls_vlnv [lindex [lsort -dictionary [get_ipdefs -quiet -filter "NAME == $hls_top"]] end]
if {$hls_vlnv eq ""} {
    error "the HLS IP $hls_top is not in $ip_repo; did export_design run?"
}
overlay_step "HLS IP $hls_vlnv"

create_bd_design $bd_name

# --- processing system with the board preset ------------------------------------------------------------------------
overlay_step "processing system $ps_vlnv ($ps_ip), PL clock $pl_clock_mhz MHz"
create_bd_cell -type ip -vlnv $ps_vlnv $ps_cell
apply_bd_automation -rule $ps_rule -config $ps_rule_config [get_bd_cells $ps_cell]
set_property -dict [concat $ps_config [list CONFIG.$pl_clock_property $pl_clock_mhz]] [get_bd_cells $ps_cell]

# --- one reset block on the PL clock ----------------------------------------------------------------------------------
create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_pl
connect_bd_net {*}[pins $ps_cell/$pl_clock_pin rst_pl/slowest_sync_clk]
connect_bd_net {*}[pins $ps_cell/$pl_reset_pin rst_pl/ext_reset_in]

# --- AXI DMA: simple mode, MM2S and S2MM, stream widths = the accelerator's, 256-beat bursts as hls4ml's design -----
overlay_step "AXI DMA: simple mode, ${length_width}-bit length, MM2S stream $in_bits bits, S2MM stream $out_bits bits"
create_bd_cell -type ip -vlnv xilinx.com:ip:axi_dma:7.1 $dma_cell
# The S2MM widths propagate from the connected stream unless marked as set by the user (as in hls4ml's templates).
set_property -dict [list CONFIG.c_m_axi_s2mm_data_width.VALUE_SRC USER \
                        CONFIG.c_s_axis_s2mm_tdata_width.VALUE_SRC USER] [get_bd_cells $dma_cell]
set_property -dict [list \
    CONFIG.c_include_sg {0} \
    CONFIG.c_sg_include_stscntrl_strm {0} \
    CONFIG.c_sg_length_width $length_width \
    CONFIG.c_include_mm2s {1} \
    CONFIG.c_include_s2mm {1} \
    CONFIG.c_addr_width $addr_width \
    CONFIG.c_m_axi_mm2s_data_width $mm_bits \
    CONFIG.c_m_axis_mm2s_tdata_width $in_bits \
    CONFIG.c_m_axi_s2mm_data_width $mm_bits \
    CONFIG.c_s_axis_s2mm_tdata_width $out_bits \
    CONFIG.c_mm2s_burst_size {256} \
    CONFIG.c_s2mm_burst_size {256} \
] [get_bd_cells $dma_cell]

# --- the accelerator: one AXI4-Stream in, one out, both with TLAST -----------------------------------------------------
create_bd_cell -type ip -vlnv $hls_vlnv $ip_cell
set ip_in [get_bd_intf_pins -quiet -of_objects [get_bd_cells $ip_cell] -filter {MODE == "Slave"}]
set ip_out [get_bd_intf_pins -quiet -of_objects [get_bd_cells $ip_cell] -filter {MODE == "Master"}]
if {[llength $ip_in] != 1 || [llength $ip_out] != 1} {
    error "$hls_vlnv should have one AXI4-Stream slave and one master (ap_ctrl_none); it has in: {$ip_in} out: {$ip_out}"
}
foreach {pin bits what} [list $ip_in $in_bits input $ip_out $out_bits output] {
    if {[get_property CONFIG.HAS_TLAST $pin] != 1} {
        error "the accelerator's $what stream $pin has no TLAST: the DMA's S2MM would never complete\
               (Vitis HLS maps TLAST only from ap_axiu/hls::axis types; see hls_build/vivado.py)"
    }
    set tdata_bits [expr {8 * [get_property CONFIG.TDATA_NUM_BYTES $pin]}]
    if {$tdata_bits != $bits} {
        error "the accelerator's $what stream $pin is $tdata_bits bits wide; the manifest's $what container is $bits bits"
    }
}
connect_bd_intf_net [intf_pin $dma_cell/M_AXIS_MM2S] $ip_in
connect_bd_intf_net $ip_out [intf_pin $dma_cell/S_AXIS_S2MM]

# --- memory-mapped paths ---------------------------------------------------------------------------------------------
overlay_step "PS $ctrl_master_port -> DMA registers; DMA -> PS $hp_port"
create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect axi_smc_ctrl
set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] [get_bd_cells axi_smc_ctrl]
connect_bd_intf_net [intf_pin $ps_cell/$ctrl_master_port] [intf_pin axi_smc_ctrl/S00_AXI]
connect_bd_intf_net [intf_pin axi_smc_ctrl/M00_AXI] [intf_pin $dma_cell/S_AXI_LITE]
create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect axi_smc_mem
set_property -dict [list CONFIG.NUM_SI {2} CONFIG.NUM_MI {1}] [get_bd_cells axi_smc_mem]
connect_bd_intf_net [intf_pin $dma_cell/M_AXI_MM2S] [intf_pin axi_smc_mem/S00_AXI]
connect_bd_intf_net [intf_pin $dma_cell/M_AXI_S2MM] [intf_pin axi_smc_mem/S01_AXI]
connect_bd_intf_net [intf_pin axi_smc_mem/M00_AXI] [intf_pin $ps_cell/$hp_port]

# --- clock and resets --------------------------------------------------------------------------------------------------
connect_bd_net {*}[pins $ps_cell/$pl_clock_pin \
    $ps_cell/$ctrl_master_clock_pin $ps_cell/$hp_clock_pin \
    $dma_cell/s_axi_lite_aclk $dma_cell/m_axi_mm2s_aclk $dma_cell/m_axi_s2mm_aclk \
    $ip_cell/ap_clk axi_smc_ctrl/aclk axi_smc_mem/aclk]
connect_bd_net {*}[pins rst_pl/peripheral_aresetn $dma_cell/axi_resetn $ip_cell/ap_rst_n]
connect_bd_net {*}[pins rst_pl/interconnect_aresetn axi_smc_ctrl/aresetn axi_smc_mem/aresetn]

# --- the runtime finds the DMA as <hier_name>/<dma_cell> (manifest dma.ip_name) ---------------------------------------
group_bd_cells $hier_name [get_bd_cells $dma_cell] [get_bd_cells $ip_cell]
assign_bd_address
validate_bd_design
save_bd_design

# --- implementation -----------------------------------------------------------------------------------------------------
set bd_file [get_files $bd_name.bd]
make_wrapper -files $bd_file -top
# The wrapper is under <project>.gen (Vivado 2020.2 and later) or <project>.srcs (earlier releases).
set wrapper [lindex [glob -nocomplain [file join $proj_dir * sources_1 bd $bd_name hdl ${bd_name}_wrapper.v]] 0]
if {$wrapper eq ""} {
    error "make_wrapper wrote no ${bd_name}_wrapper.v under $proj_dir"
}
add_files -norecurse $wrapper
set_property top ${bd_name}_wrapper [current_fileset]
update_compile_order -fileset sources_1

overlay_step "synthesis, implementation and bitstream ($jobs jobs)"
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
set impl_status [get_property STATUS [get_runs impl_1]]
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    error "implementation did not finish: $impl_status (logs: [file join $proj_dir $proj_name.runs])"
}

open_run impl_1
report_utilization -file [file join $out_dir utilization.rpt]
report_timing_summary -file [file join $out_dir timing_summary.rpt]

set bit [lindex [glob -nocomplain [file join $proj_dir $proj_name.runs impl_1 ${bd_name}_wrapper.bit]] 0]
set hwh [lindex [glob -nocomplain [file join $proj_dir * sources_1 bd $bd_name hw_handoff $bd_name.hwh]] 0]
if {$bit eq "" || $hwh eq ""} {
    error "no bitstream ($bit) or hardware handoff ($hwh) after implementation"
}
# PYNQ finds the .hwh next to the .bit by its stem.
file copy -force $bit [file join $out_dir $out_stem.bit]
file copy -force $hwh [file join $out_dir $out_stem.hwh]

set run [get_runs impl_1]
set summary [open [file join $out_dir vivado_summary.txt] w]
puts $summary "# written by the overlay's block-design script"
puts $summary "vivado_version=[version -short]"
puts $summary "part=$part"
puts $summary "board_part=$found_board_part"
puts $summary "hls_ip=$hls_vlnv"
puts $summary "impl_status=$impl_status"
foreach stat {WNS TNS WHS THS} {
    puts $summary "[string tolower $stat]=[get_property STATS.$stat $run]"
}
puts $summary "bit=$out_stem.bit"
puts $summary "hwh=$out_stem.hwh"
close $summary
overlay_step "bitstream done: [file join $out_dir $out_stem.bit]"
exit
