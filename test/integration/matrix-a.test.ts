import { defineMatrix } from './matrix.js';

defineMatrix(['ext2', 'ext3', 'ext4', 'ext4-b1024', 'ext4-b2048', 'ext4-b65536', 'ext4-i128', 'ext4-noextent']);
